"""Certificate names for shell completion: a read-only peek at the inventory.

Runs on every <TAB>, so it opens the inventory read-only (never creating or migrating it, as
``Inventory`` would), asks one indexed query, and answers nothing rather than raising: a shell
completion that prints a traceback into the user's prompt is worse than none.

The inventory is ``PKI/inventory.db``, or the database ``--db`` / ``GRPCPKI_DB`` names
(docs/team.md). For PostgreSQL it connects with psycopg directly (SQLAlchemy's import alone
would cost more than the query), in a read-only session with a short connect and statement
timeout: a database that is down or unreachable costs the user one short pause, not a hung
shell.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from grpcpki.engine.listing import connect_readonly

INVENTORY = "inventory.db"  # engine.pki.INVENTORY; not imported, so a <TAB> never loads cryptography
DB_ENV = "GRPCPKI_DB"  # engine.inventory.DB_ENV; not imported, so a <TAB> never loads SQLAlchemy

LEAF_KINDS = ("server", "client")
# Seconds. libpq's connect_timeout is whole seconds, at least 2 (libpq docs, "connect_timeout");
# the statement timeout bounds a server that accepts but is stuck (a lock, an overloaded host).
CONNECT_TIMEOUT = 2
STATEMENT_TIMEOUT_MS = 1500


def certificate_names(
    pki_dir: Path | str, *, kind: str | None = None, prefix: str = "", db_url: str | None = None
) -> list[str]:
    """Names of active leaf certificates (of ``kind`` if given) starting with ``prefix``, sorted.

    Without ``kind``, a NAME that is both a server and a client certificate is offered as
    ``server/NAME`` and ``client/NAME``: the bare NAME would be refused as ambiguous.
    ``db_url`` (default ``$GRPCPKI_DB``) reads a shared inventory instead of the PKI's own file.
    """
    kinds = (kind,) if kind in LEAF_KINDS else LEAF_KINDS
    head, slash, rest = prefix.partition("/")
    bare = rest if slash and head in LEAF_KINDS else prefix  # the NAME part, for the indexed filter
    url = db_url if db_url is not None else os.environ.get(DB_ENV) or None
    scheme, sep, _rest = (url or "").partition("://")
    backend = scheme.partition("+")[0]
    if url is None:
        rows = _sqlite_rows(Path(pki_dir) / INVENTORY, kinds, bare)
    elif sep and backend == "sqlite":
        # SQLAlchemy's form: sqlite:///relative/path or sqlite:////absolute/path.
        rows = _sqlite_rows(Path(_rest[1:]) if _rest.startswith("/") else Path(_rest), kinds, bare)
    elif sep and backend in ("postgresql", "postgres"):
        rows = _postgres_rows(f"postgresql://{_rest}", kinds, bare)
    else:
        return []
    by_name: dict[str, list[str]] = {}
    for name, row_kind in rows:
        by_name.setdefault(str(name), []).append(str(row_kind))
    names: list[str] = []
    for name, name_kinds in by_name.items():
        names += [f"{k}/{name}" for k in sorted(name_kinds, reverse=True)] if len(name_kinds) > 1 else [name]
    return [n for n in names if n.startswith(prefix)]


_QUERY = (
    "SELECT DISTINCT name, kind FROM certificates WHERE status = 'active' "
    "AND kind IN ({kinds}) AND substr(name, 1, {n}) = {p} ORDER BY name, kind"
)


def _sqlite_rows(db: Path, kinds: tuple[str, ...], bare: str) -> list[tuple[object, object]]:
    if not db.is_file():
        return []
    try:
        connection = connect_readonly(db, timeout=1)  # the reader `grpcpki list` uses
        try:
            query = _QUERY.format(kinds=",".join("?" * len(kinds)), n="?", p="?")
            return connection.execute(query, (*kinds, len(bare), bare)).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return []


def _postgres_rows(conninfo: str, kinds: tuple[str, ...], bare: str) -> list[tuple[object, object]]:
    """The same query on PostgreSQL, in a read-only session bounded in time; [] on any failure
    (no driver, a bad URL, the server down, no tables yet: completion never creates them)."""
    try:
        import psycopg

        with psycopg.connect(
            conninfo,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="grpcpki completion",
            options=f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        ) as connection:
            query = _QUERY.format(kinds=",".join(["%s"] * len(kinds)), n="%s", p="%s")
            return [tuple(row) for row in connection.execute(query, (*kinds, len(bare), bare)).fetchall()]
    except Exception:  # noqa: BLE001 - psycopg's errors, a missing driver, a malformed URL: no names
        return []


__all__ = ["certificate_names"]
