"""Listing the inventory (``grpcpki list``): the embedded SQLite file read with the standard
library's ``sqlite3`` alone, read-only.

Why not through :class:`grpcpki.engine.inventory.Inventory`: importing SQLAlchemy costs ~0.2 s
of start-up, more than streaming 10,000 rows (bench/list.py: listing 100,000 went from 1.9x to
2.5x a bare SQLite query when the inventory moved to SQLAlchemy). A listing needs none of what
it brings: no migration, no writes, no PostgreSQL.

:func:`open_listing` takes this reader only when it is sure to read exactly what ``Inventory``
would: no ``--db`` / ``GRPCPKI_DB``, an ``inventory.db`` and ``ca.crt`` present, no store change
left for recovery (``.journal``), and a schema at the Alembic head this grpcpki knows. Anything
else (an old schema to migrate, a crash to recover, a shared PostgreSQL inventory, a missing
PKI and its one-line error) goes to ``open_inventory``, as before. Both readers run the same
statement shape (same filters, ``ORDER BY not_after, name``: the ``(status, not_after)`` index,
no sort) and turn rows into :class:`Listed` with the same function, and
tests/speed/test_listing_readers.py holds them to the same rows on the same data.

The file is opened with ``mode=ro``: a listing can never write, not even by accident, and works
for a user who may only read the PKI. In WAL mode (the inventory's, see ``Inventory._use_wal``)
a read-only connection still reads one consistent snapshot per statement and never waits for
a writer (https://sqlite.org/wal.html#readonly).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from grpcpki.engine.errors import InventoryError

INVENTORY_FILE = "inventory.db"
DB_ENV = "GRPCPKI_DB"
# PRAGMA user_version of an inventory Alembic keeps: inventory.SCHEMA_VERSION, which imports
# SQLAlchemy (tests/speed/test_listing_readers.py keeps them equal).
SCHEMA_VERSION = 3
_VERSIONS = Path(__file__).with_name("migrations") / "versions"


def head_revision() -> str:
    """schema.HEAD_REVISION without importing SQLAlchemy: the number of the newest revision file
    (``versions/rev_0005_...py`` holds revision "0005", as grpcpki/engine/migrations/__init__.py
    has developers name them). Read from the files rather than copied here, so a new revision
    can never leave the listing reading a schema it does not know."""
    numbers = [path.name[4:8] for path in _VERSIONS.glob("rev_[0-9][0-9][0-9][0-9]_*.py")]
    return max(numbers, default="")


# The columns a listing reads, in Listed's order.
LISTED_COLUMNS = ("name", "kind", "status", "serial", "subject", "sans", "issuer", "not_before", "not_after",
                  "fingerprint", "key_type", "eku", "ca_generation", "cert_path", "chain_path", "key_path",
                  "revoked_at", "revocation_reason", "created_at")

_DAY = timedelta(days=1)


# Shared by Record and Listed, so the two views of a row cannot disagree on what "expired" means.
def _state(status: str, not_after: datetime, now: datetime | None) -> str:
    if status == "active" and not_after <= (now or datetime.now(UTC)):
        return "expired"
    return status


def _days_left(not_after: datetime, now: datetime | None) -> int:
    return (not_after - (now or datetime.now(UTC))) // _DAY


def openssl_serial(serial_hex: str) -> str:
    """``5a3f`` -> ``5A3F``, ``a3f`` -> ``0A3F``: OpenSSL prints each byte of the DER integer's
    magnitude as two uppercase digits (i2a_ASN1_INTEGER), so people can match the two outputs."""
    text = serial_hex.upper()
    return "0" + text if len(text) % 2 else text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    # fromisoformat (C, reads the trailing Z since Python 3.11) is ~20x faster than strptime:
    # it is most of the cost of streaming 100,000 rows through `grpcpki list`.
    return datetime.fromisoformat(text)


def _moment(value: str | datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime: SQLite's ISO text, PostgreSQL's timestamptz."""
    return _parse(value) if isinstance(value, str) else value


def _string_list(text: str) -> tuple[str, ...]:
    """A JSON list of strings as the inventory writes it (``json.dumps``), decoded ~5x faster than
    ``json.loads`` when no string needs an escape; anything else goes to ``json.loads``."""
    if text == "[]":
        return ()
    if text.startswith('["') and text.endswith('"]') and "\\" not in text:
        items = text[2:-2].split('", "')
        if text.count('"') == 2 * len(items):  # no quote inside an item: the split was exact
            return tuple(items)
    return tuple(json.loads(text))


class Listed(NamedTuple):
    """One inventory row for listing (:meth:`Inventory.iter_listing`, :meth:`SqliteListing.iter_listing`):
    a ``Record``'s facts with paths as text, in a tuple, which is cheap to build by the hundred thousand."""

    name: str
    kind: str
    status: str
    serial: str
    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key_type: str
    eku: tuple[str, ...]
    ca_generation: int | None
    cert_path: str | None
    chain_path: str | None
    key_path: str | None
    revoked_at: datetime | None
    revocation_reason: str | None
    created_at: datetime

    @property
    def openssl_serial(self) -> str:
        return openssl_serial(self.serial)

    def state(self, now: datetime | None = None) -> str:
        """The status, except that an active certificate past its notAfter is "expired"."""
        return _state(self.status, self.not_after, now)

    def days_left(self, now: datetime | None = None) -> int:
        return _days_left(self.not_after, now)

    def to_dict(self) -> dict[str, object]:
        """The keys of :meth:`Record.to_dict`, in its order."""
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "serial": self.serial,
            "subject": self.subject, "sans": list(self.sans), "issuer": self.issuer,
            "not_before": self.not_before, "not_after": self.not_after, "fingerprint_sha256": self.fingerprint,
            "key_type": self.key_type, "extended_key_usage": list(self.eku), "ca_generation": self.ca_generation,
            "cert_path": self.cert_path, "chain_path": self.chain_path, "key_path": self.key_path,
            "revoked_at": self.revoked_at, "revocation_reason": self.revocation_reason, "created_at": self.created_at,
        }


def listed_rows(
    rows: Iterable[Sequence[Any]], root: Path, moment: Callable[[Any], datetime] = _moment
) -> Iterator[Listed]:
    """Rows of :data:`LISTED_COLUMNS` as :class:`Listed`: the one conversion both readers use.
    Stored paths are relative to the PKI directory (absolute ones are kept as they are)."""
    prefix = f"{root}/"
    loads = _string_list

    def path(value: str | None) -> str | None:
        return None if not value else value if value.startswith("/") else prefix + value

    for (name, kind, status, serial, subject, sans, issuer, not_before, not_after, fingerprint, key_type, eku,
         ca_generation, cert_path, chain_path, key_path, revoked_at, reason, created_at) in rows:
        yield Listed(
            name, kind, status, serial, subject, loads(sans), issuer, moment(not_before), moment(not_after),
            fingerprint, key_type, loads(eku), ca_generation, path(cert_path), path(chain_path), path(key_path),
            moment(revoked_at) if revoked_at else None, reason, moment(created_at),
        )


class ListingSource(Protocol):
    """What ``grpcpki list`` reads: :class:`SqliteListing`, or an ``Inventory``."""

    def iter_listing(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        expiring_before: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Listed]: ...

    def count(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        expiring_before: datetime | None = None,
    ) -> int: ...

    def close(self) -> None: ...


def connect_readonly(db_path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A read-only connection to an SQLite file that must exist (``mode=ro`` never creates one).
    Autocommit: each SELECT reads its own consistent snapshot and holds no lock after it."""
    return sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout, isolation_level=None)


def _where(
    kinds: Sequence[str] | None, statuses: Sequence[str] | None, expiring_before: datetime | None
) -> tuple[str, list[object]]:
    # Inventory._filters, as SQLite text: the same clauses in the same order, so the planner
    # takes the same index.
    clauses: list[str] = []
    params: list[object] = []
    if kinds:
        clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params += kinds
    if statuses:
        clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
        params += statuses
    if expiring_before is not None:
        clauses.append("not_after < ?")
        params.append(_iso(expiring_before))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def open_current_inventory(pki_dir: Path | str) -> sqlite3.Connection | None:
    """A read-only connection to the PKI's embedded inventory when reading it directly gives
    exactly what ``open_inventory`` would (see the module), else None. Shared by ``list`` and
    ``apply``'s no-op path (grpcpki/engine/applyplan.py)."""
    root = Path(pki_dir)
    db_path = root / INVENTORY_FILE
    if os.environ.get(DB_ENV) or not db_path.is_file() or not (root / "ca.crt").is_file():
        return None
    journal = root / ".journal"
    if journal.is_dir() and any(journal.iterdir()):
        return None  # a writer was killed mid-change: open_inventory applies the recovery rule
    try:
        connection = connect_readonly(db_path)
    except sqlite3.Error:
        return None
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        has_alembic = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone() if has_alembic else None
    except sqlite3.Error:
        revision = None  # not an inventory, or damaged: open_inventory says which, in one line
    if revision is None or revision[0] != head_revision() or version not in (0, SCHEMA_VERSION):
        connection.close()
        return None
    return connection


class SqliteListing:
    """A read-only reader of an up-to-date embedded inventory; see the module's docstring."""

    def __init__(self, connection: sqlite3.Connection, root: Path) -> None:
        self._conn = connection
        self.root = root

    @classmethod
    def open(cls, pki_dir: Path | str) -> SqliteListing | None:
        """The reader, or None when ``open_inventory`` must take this PKI (see the module)."""
        connection = open_current_inventory(pki_dir)
        return None if connection is None else cls(connection, Path(pki_dir))

    def iter_listing(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        expiring_before: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Listed]:
        """:meth:`Inventory.iter_listing`: sorted by expiry then name, streamed from one snapshot."""
        where, params = _where(kinds, statuses, expiring_before)
        sql = f"SELECT {', '.join(LISTED_COLUMNS)} FROM certificates{where} ORDER BY not_after, name"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        try:
            cursor = self._conn.execute(sql, params)
            try:
                # SQLite's text timestamps: fromisoformat directly, no per-value type test.
                yield from listed_rows(cursor, self.root, _parse)
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from None

    def count(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        expiring_before: datetime | None = None,
    ) -> int:
        where, params = _where(kinds, statuses, expiring_before)
        try:
            return int(self._conn.execute(f"SELECT count(*) FROM certificates{where}", params).fetchone()[0])
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: sqlite3.Error) -> InventoryError:
        return InventoryError(
            f"cannot read the inventory {self.root / INVENTORY_FILE}: {exc}",
            "run `grpcpki doctor`, or restore inventory.db from backup",
        )

    def close(self) -> None:
        self._conn.close()


def open_listing(pki_dir: Path | str) -> ListingSource:
    """What ``grpcpki list`` reads: :class:`SqliteListing` when it applies, else the full
    ``Inventory`` (which migrates, recovers, reaches PostgreSQL and raises NoCAError)."""
    reader = SqliteListing.open(pki_dir)
    if reader is not None:
        return reader
    from grpcpki.engine.inventory import open_inventory

    return open_inventory(pki_dir)


__all__ = [
    "LISTED_COLUMNS",
    "Listed",
    "ListingSource",
    "SqliteListing",
    "connect_readonly",
    "listed_rows",
    "open_current_inventory",
    "open_listing",
    "openssl_serial",
]
