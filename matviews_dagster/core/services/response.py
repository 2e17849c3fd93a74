"""``ServiceResponse``: services return errors as values, never raise for expected failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Concatenate, Literal, ParamSpec

import psycopg

from ..catalog import NotAMaterializedView
from ..names import QualifiedName
from .statement_log import StatementLog

ServiceStatus = Literal["created", "updated", "deleted", "skipped", "error"]
P = ParamSpec("P")


@dataclass
class ServiceResponse:
    """The outcome of one service call.

    ``payload`` holds results (e.g. ``rows_count``); ``meta`` holds what was done (options,
    the SQL executed); ``error`` a one-line message and ``hint`` how to fix it.
    """

    status: ServiceStatus
    payload: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "error"

    @classmethod
    def failure(cls, error: str, *, hint: str | None = None, **meta: Any) -> ServiceResponse:
        return cls(status="error", error=error, hint=hint, meta=dict(meta))


class ServiceError(Exception):
    """An expected failure inside a service; raised to roll back, returned as a response."""

    def __init__(self, message: str, *, hint: str | None = None, **meta: Any) -> None:
        super().__init__(message)
        self.hint = hint
        self.meta = meta


def describe_db_error(exc: psycopg.Error) -> str:
    """A one-line description of a database error with its SQLSTATE and, when it was raised
    inside a function the query calls, where (``in PL/pgSQL function f(integer) line 3``)."""
    diag = exc.diag
    message = (diag.message_primary or str(exc).strip().splitlines()[0] or type(exc).__name__).strip()
    if diag.message_detail:
        message = f"{message} ({diag.message_detail.strip()})"
    where = function_context(exc)
    if where:
        message = f"{message} (in {where})"
    return f"{message} [SQLSTATE {diag.sqlstate}]" if diag.sqlstate else message


def disk_full(conn: psycopg.Connection, name: QualifiedName, what: str, exc: psycopg.Error) -> ServiceError:
    """Out of disk (SQLSTATE 53100): name the view's tablespace, its size, and which way of
    refreshing needs how much room there (the failed statement was rolled back). ``what`` says
    what ran out, e.g. ``a swap refresh of``; a concurrent refresh is told about its working copy."""
    row = conn.execute(
        """SELECT coalesce(t.spcname, (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace)),
                  pg_size_pretty(pg_total_relation_size(c.oid)), current_setting('temp_tablespaces')
           FROM pg_database d LEFT JOIN pg_class c ON c.oid = to_regclass(%s)
           LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
           WHERE d.datname = current_database()""",
        (name.identifier.as_string(conn),),
    ).fetchone()
    tablespace, size, temp = row if row else ("?", None, "")
    if "concurrent" in what:
        hint = (
            f"free space in tablespace {tablespace} and in temp_tablespaces ({temp or 'the database default'}), "
            "where a concurrent refresh writes a whole working copy of the query's rows, or point "
            "temp_tablespaces at a tablespace with room"
        )
    else:
        hint = (
            f"free at least the view's size ({size or 'unknown'}) in tablespace {tablespace}, move the view to a "
            "tablespace with room (ALTER MATERIALIZED VIEW ... SET TABLESPACE), or refresh with "
            "strategy='concurrent'"
        )
    return ServiceError(
        f"{what} {name} ran out of disk in tablespace {tablespace} ({describe_db_error(exc)}); a regular or "
        "swap refresh writes a whole second copy of the view there before the old one is dropped, a concurrent "
        "refresh writes only the rows that changed there (its working copy goes to temp_tablespaces); nothing "
        "was changed",
        hint=hint,
        tablespace=tablespace,
    )


def function_context(exc: psycopg.Error) -> str | None:
    """The innermost function an error was raised in, from Postgres's error context."""
    for line in (exc.diag.context or "").splitlines():
        if "function" in line:
            return line.strip()
    return None


FUNCTION_HINT = (
    "the error comes from inside that function: it resolves unqualified names with the session's "
    "search_path unless it sets its own (ALTER FUNCTION ... SET search_path = ...)"
)


def returns_errors(
    func: Callable[Concatenate[psycopg.Connection, P], ServiceResponse],
) -> Callable[Concatenate[psycopg.Connection, P], ServiceResponse]:
    """Give the service a ``StatementLog`` (``log=``), turn expected failures into error
    responses, and put the statements executed, even those of a failure, in ``meta["sql"]``."""

    @wraps(func)
    def wrapper(conn: psycopg.Connection, /, *args: P.args, **kwargs: P.kwargs) -> ServiceResponse:
        log = StatementLog(conn)
        try:
            response = func(conn, *args, log=log, **kwargs)  # type: ignore[arg-type]
        except ServiceError as exc:
            response = ServiceResponse.failure(str(exc), hint=exc.hint, **exc.meta)
        except NotAMaterializedView as exc:
            response = ServiceResponse.failure(str(exc))
        except psycopg.Error as exc:
            response = ServiceResponse.failure(
                describe_db_error(exc),
                hint=FUNCTION_HINT if function_context(exc) else None,
                sqlstate=exc.diag.sqlstate,
                exception=type(exc).__name__,
            )
        response.meta["sql"] = log.statements
        for key, value in log.meta.items():
            response.meta.setdefault(key, value)
        return response

    return wrapper
