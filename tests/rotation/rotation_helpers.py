"""Shared helpers for the rotation tests (not a conftest: tests/conftest.py is the lead's, and two
conftest modules without packages would share one import name)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from grpcpki.engine import Pki, Role
from grpcpki.engine.certs import load_certificates

NOW = datetime.now(UTC)


def later(days: float) -> datetime:
    return NOW + timedelta(days=days)


def make_pki(
    tmp_path: Path, *, intermediate: bool = False, passphrase: bytes | None = None, name: str = "Rotation CA",
    path_len: int | None = None,
) -> Pki:
    """A PKI with a server `localhost` and a client `web` (SPIFFE ID), 90-day defaults."""
    Pki.init(tmp_path / "pki", name=name, intermediate=intermediate, passphrase=passphrase, path_len=path_len)
    pki = Pki.open(tmp_path / "pki", passphrase=passphrase)
    pki.issue(Role.SERVER, "localhost")
    pki.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    return pki


def certs_in(path: Path) -> list[x509.Certificate]:
    return load_certificates(path.read_bytes())


def subjects(path: Path) -> list[str]:
    return [c.subject.rfc4514_string() for c in certs_in(path)]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes under path, and the inventory's rows: to assert that nothing changed.

    The inventory is compared by content: in WAL mode its bytes move between inventory.db and
    inventory.db-wal (a checkpoint) without any row changing.
    """
    files = {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith("inventory.db")
    }
    database = path / "inventory.db"
    if database.is_file():
        with closing(sqlite3.connect(database)) as db:
            files["inventory.db"] = "\n".join(db.iterdump()).encode()
    return files
