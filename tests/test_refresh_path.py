"""The path of one refresh reads top to bottom: from the CLI's ``refresh`` command and from
the Dagster step (``MatViewsResource.refresh(context)``'s invocation) to the service that sends
``REFRESH``, in at most 8 calls, never returning into a file it left, and as
``docs/architecture.md`` draws it. The stack is read when the statement is really sent."""

import itertools
import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

import matviews_dagster
from matviews_dagster import MatViewDefinition, MatViews, MatViewsResource, matview_assets
from matviews_dagster.cli.app import main

PACKAGE = Path(matviews_dagster.__file__).resolve().parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
VIEW = MatViewDefinition(name="mv_users", sql="SELECT id, email FROM users")
MAX_CALLS = 8


@pytest.fixture
def stacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[traceback.FrameSummary]]]:
    """The package's frames at each ``REFRESH MATERIALIZED VIEW`` sent."""
    seen: list[list[traceback.FrameSummary]] = []
    send = psycopg.Cursor.execute

    def execute(self, query, params=None, **kwargs):  # type: ignore[no-untyped-def]
        text = query.as_string(self.connection) if hasattr(query, "as_string") else str(query)
        if text.startswith("REFRESH MATERIALIZED VIEW"):
            seen.append([f for f in traceback.extract_stack() if f.filename.startswith(str(PACKAGE))])
        return send(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    yield seen


def chain(frames: list[traceback.FrameSummary], entry: str) -> list[str]:
    """``module.function`` of each call from ``entry`` (a ``module.function``) down to the statement."""
    names = [f"{Path(f.filename).relative_to(PACKAGE).with_suffix('')}.{f.name}".replace("/", ".") for f in frames]
    return names[names.index(entry) :]


def assert_one_direction(calls: list[str]) -> None:
    modules = [call.rsplit(".", 1)[0] for call in calls]
    left: set[str] = set()
    for previous, module in itertools.pairwise(modules):
        if module != previous:
            assert module not in left, f"returns into {module}, which it left: {calls}"
            left.add(previous)
    service = next(i for i, call in enumerate(calls) if call.startswith("core.services.refresh."))
    assert service <= MAX_CALLS, f"{service} calls to the service: {calls}"


def documented(path: str) -> list[str]:
    """The calls ``docs/architecture.md`` lists for a path: its ``### <path>`` numbered list's
    ``module.function`` names, in order."""
    text = ARCHITECTURE.read_text()
    section = text.split(f"### {path}", 1)[1].split("###", 1)[0]
    return re.findall(r"^\d+\. `([\w.<>]+)`", section, flags=re.M)


def test_the_cli_refresh_path(dsn, users, tmp_path, stacks) -> None:
    (tmp_path / "matviews.yaml").write_text(f"views:\n  - name: mv_users\n    sql: {VIEW.sql}\n")
    args = ["--dsn", dsn, "--definitions", str(tmp_path / "matviews.yaml")]
    with pytest.raises(SystemExit) as created:
        main([*args, "create", "mv_users"])
    assert created.value.code == 0
    with pytest.raises(SystemExit) as refreshed:
        main([*args, "refresh", "mv_users"])
    assert refreshed.value.code == 0
    (frames,) = stacks
    calls = chain(frames, "cli.commands.refresh")
    assert_one_direction(calls)
    assert calls == documented("From the CLI: matviews refresh NAME"), calls


def test_the_dagster_step_path(dsn, users, stacks) -> None:
    @matview_assets(definitions=[VIEW])
    def views(context: dg.AssetExecutionContext, matviews: MatViewsResource):  # type: ignore[no-untyped-def]
        yield from matviews.refresh(context).stream()

    with MatViews(dsn, [VIEW]) as mv:
        assert mv.create("mv_users").ok  # so that the step refreshes it (a missing one is created instead)
    result = dg.materialize([views], resources={"matviews": MatViewsResource(dsn=dsn)})
    assert result.success
    (frames,) = stacks
    calls = chain(frames, "invocation.stream")
    assert_one_direction(calls)
    assert calls == documented("From the Dagster step: Materialize"), calls
