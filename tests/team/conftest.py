"""Team-scale tests: the throwaway PostgreSQL server lives in pg_support.py (a unique module name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pg_support import PostgresServer, postgres, postgres_db, require_psycopg  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The database URL for one test: None (the PKI's own SQLite file) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    require_psycopg()
    server: PostgresServer = request.getfixturevalue("postgres")
    yield server.url(request.getfixturevalue("postgres_db"))

