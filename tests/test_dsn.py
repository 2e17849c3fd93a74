"""DSN resolution order and password masking."""

from __future__ import annotations

import pytest

from matviews_dagster.core.dsn import configured_dsn, mask_dsn, scrub


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MATVIEWS_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert configured_dsn(None) is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://b/db")
    assert configured_dsn(None) == "postgresql://b/db"
    monkeypatch.setenv("MATVIEWS_DSN", "postgresql://a/db")
    assert configured_dsn(None) == "postgresql://a/db"
    assert configured_dsn("postgresql://explicit/db") == "postgresql://explicit/db"


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://app:hunter2@db:5432/prod", "postgresql://app:***@db:5432/prod"),
        ("postgres://app@db/prod", "postgres://app@db/prod"),
        ("host=db user=app password=hunter2 dbname=prod", "host=db user=app password=*** dbname=prod"),
        ("host=db password='hun ter2' dbname=prod", "host=db password=*** dbname=prod"),
        (  # libpq's URI parameters (a password kept out of the userinfo)
            "postgresql://db/prod?user=app&password=hunter2&sslmode=require",
            "postgresql://db/prod?user=app&password=***&sslmode=require",
        ),
    ],
)
def test_mask(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked
    assert "hunter2" not in scrub(f"error near {dsn}", dsn)
