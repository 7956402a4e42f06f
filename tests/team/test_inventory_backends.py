"""The inventory on its backends: schema revisions, the upgrade of an inventory made before
Alembic, and (with PostgreSQL, tests/pg_support.py) the same behaviour on a shared database."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest


from grpcpki.engine.inventory import SCHEMA_VERSION, Inventory
from grpcpki.engine.schema import HEAD_REVISION
from support import cli_env, run_grpcpki

# The schema grpcpki wrote before Alembic (user_version 1), verbatim from the hand-written
# MIGRATIONS[0] of engine/inventory.py at commit 23a7fcd.
OLD_SCHEMA_V1 = """
    CREATE TABLE certificates (
        id            INTEGER PRIMARY KEY,
        serial        TEXT NOT NULL UNIQUE,           -- lowercase hex, no separators
        kind          TEXT NOT NULL CHECK (kind IN ('root','intermediate','cross','server','client')),
        name          TEXT NOT NULL,
        subject       TEXT NOT NULL,
        sans          TEXT NOT NULL DEFAULT '[]',     -- JSON list of "DNS:x" / "IP:x" / "URI:x"
        issuer        TEXT NOT NULL,
        not_before    TEXT NOT NULL,                  -- ISO 8601 UTC, sortable
        not_after     TEXT NOT NULL,
        fingerprint   TEXT NOT NULL,                  -- SHA-256 of the DER certificate
        key_type      TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('active','superseded','revoked','archived')),
        eku           TEXT NOT NULL DEFAULT '[]',     -- JSON list, e.g. ["serverAuth"]
        ca_generation INTEGER,                        -- CA generation that issued it (or is, for CAs)
        cert_path     TEXT,                           -- relative to the PKI directory
        chain_path    TEXT,
        key_path      TEXT,
        superseded_by INTEGER REFERENCES certificates(id),
        revoked_at    TEXT,
        revocation_reason TEXT,
        created_at    TEXT NOT NULL
    );
    -- `grpcpki issue/renew/inspect NAME` look up the active certificate by name.
    CREATE INDEX certificates_name_status ON certificates(name, status);
    -- `grpcpki list --expiring` and renewal scans.
    CREATE INDEX certificates_status_not_after ON certificates(status, not_after);
    -- At most one active leaf per name: a name is how servers and clients find their files.
    CREATE UNIQUE INDEX certificates_one_active_leaf ON certificates(name)
        WHERE status = 'active' AND kind IN ('server', 'client');
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """


def test_head_revision_is_the_newest_alembic_revision() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import grpcpki.engine.inventory as inventory_module

    config = Config()
    config.set_main_option("script_location", str(Path(inventory_module.__file__).with_name("migrations")))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def _old_statements(script: str = OLD_SCHEMA_V1) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line.split("--", 1)[0]
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements


# The hand-written step to user_version 2 (names unique per kind), verbatim from commit 31e9c75.
OLD_STEP_V2 = """
    DROP INDEX certificates_one_active_leaf;
    CREATE UNIQUE INDEX certificates_one_active_leaf_per_kind ON certificates(name, kind)
        WHERE status = 'active' AND kind IN ('server', 'client');
"""

# The columns of schema 1, in its order (later revisions add columns: 0005's origin).
V1_COLUMNS = (
    "id, serial, kind, name, subject, sans, issuer, not_before, not_after, fingerprint, key_type, status, eku, "
    "ca_generation, cert_path, chain_path, key_path, superseded_by, revoked_at, revocation_reason, created_at"
)


@pytest.mark.parametrize("old_version", [1, 2])
def test_an_inventory_made_before_alembic_is_upgraded_in_place(tmp_path: Path, old_version: int) -> None:
    # A real PKI, whose inventory is then rebuilt exactly as grpcpki made it before Alembic:
    # the old DDL, user_version 1, the same rows.
    pki = tmp_path / "pki"
    assert run_grpcpki("--pki", str(pki), "init-ca").code == 0
    assert run_grpcpki("--pki", str(pki), "issue", "server", "web").code == 0
    with closing(sqlite3.connect(pki / "inventory.db")) as db:
        rows = db.execute(f"SELECT {V1_COLUMNS} FROM certificates ORDER BY id").fetchall()
        meta = db.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
    for leftover in pki.glob("inventory.db*"):
        leftover.unlink()
    with closing(sqlite3.connect(pki / "inventory.db", isolation_level=None)) as db:
        for statement in _old_statements():
            db.execute(statement)
        if old_version == 2:
            for statement in _old_statements(OLD_STEP_V2):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {old_version}")
        db.executemany(f"INSERT INTO certificates VALUES ({','.join('?' * len(rows[0]))})", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta)
    listed = run_grpcpki("--pki", str(pki), "list", "--json")
    assert listed.code == 0, listed.output
    assert [c["name"] for c in json.loads(listed.stdout)] == ["web", "grpcpki CA"]
    with closing(sqlite3.connect(pki / "inventory.db")) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute(f"SELECT {V1_COLUMNS} FROM certificates ORDER BY id").fetchall() == rows
        # Revision 0002's index: one active leaf per name and kind.
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "certificates_one_active_leaf_per_kind" in indexes and "certificates_one_active_leaf" not in indexes
    # And the upgraded inventory takes writes: renew, revoke.
    assert run_grpcpki("--pki", str(pki), "renew", "web", "--force").code == 0
    assert run_grpcpki("--pki", str(pki), "revoke", "web").code == 0
    with closing(sqlite3.connect(pki / "inventory.db")) as db:
        states = db.execute("SELECT status FROM certificates WHERE name = 'web' ORDER BY id").fetchall()
    assert states == [("superseded",), ("revoked",)]


def test_an_unknown_alembic_revision_is_refused_as_newer(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert run_grpcpki("--pki", str(pki), "init-ca").code == 0
    with closing(sqlite3.connect(pki / "inventory.db")) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffff'")
        db.commit()
    result = run_grpcpki("--pki", str(pki), "list")
    assert result.code == 1 and "newer grpcpki" in result.stderr and "Traceback" not in result.stderr


def test_a_copy_opened_twice_migrates_once(tmp_path: Path) -> None:
    db_path = tmp_path / "inventory.db"
    first = Inventory(db_path, tmp_path)
    first.close()
    again = Inventory(db_path, tmp_path)
    assert again.get_meta("missing") is None
    again.close()
    shutil.copy(db_path, tmp_path / "copy.db")
    with closing(sqlite3.connect(tmp_path / "copy.db")) as db:
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def _imported(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "grpcpki", *args],
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_help_imports_no_sqlalchemy_and_a_current_inventory_no_alembic(tmp_path: Path) -> None:
    assert not {m for m in _imported("--help") if m.startswith(("sqlalchemy", "alembic"))}
    pki = str(tmp_path / "pki")
    assert run_grpcpki("--pki", pki, "init-ca").code == 0
    # `list` reads an embedded inventory with sqlite3 alone (grpcpki.engine.listing).
    assert not {m for m in _imported("--pki", pki, "list") if m.startswith(("sqlalchemy", "alembic"))}
    planning = _imported("--pki", pki, "renew", "--all", "--dry-run")
    assert "sqlalchemy" in planning  # sanity: the plan did read the inventory through it
    # schema.HEAD_REVISION matched: no migration, so Alembic is never imported.
    assert not {m for m in planning if m.startswith("alembic")}
