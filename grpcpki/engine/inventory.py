"""The SQLite inventory of everything a PKI directory has issued.

One file, ``inventory.db``, beside the certificates. The schema is versioned with
``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place, and a file from a
newer grpcpki is refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from grpcpki.engine.errors import AlreadyExistsError, AmbiguousNameError, InventoryError, NoCAError

KINDS = ("root", "intermediate", "cross", "server", "client")
STATUSES = ("active", "superseded", "revoked", "archived")

# Each entry upgrades user_version N to N+1. Never edit a released step; append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
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
    """,
    # 2: names are unique per kind, so a server and a client can both be called `orders`
    # (issue 11, item 9). Every inventory of schema 1 already satisfies the narrower rule.
    """
    DROP INDEX certificates_one_active_leaf;
    CREATE UNIQUE INDEX certificates_one_active_leaf_per_kind ON certificates(name, kind)
        WHERE status = 'active' AND kind IN ('server', 'client');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


_DAY = timedelta(days=1)


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


@dataclass(frozen=True)
class Record:
    """One row of the inventory. Paths are absolute."""

    id: int
    serial: str
    kind: str
    name: str
    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key_type: str
    status: str
    eku: tuple[str, ...]
    ca_generation: int | None
    cert_path: Path | None
    chain_path: Path | None
    key_path: Path | None
    superseded_by: int | None
    revoked_at: datetime | None
    revocation_reason: str | None
    created_at: datetime

    @property
    def is_leaf(self) -> bool:
        return self.kind in ("server", "client")

    @property
    def openssl_serial(self) -> str:
        """The serial as `openssl x509 -noout -serial` prints it: uppercase hex, whole bytes."""
        return openssl_serial(self.serial)

    def state(self, now: datetime | None = None) -> str:
        """The status, except that an active certificate past its notAfter is "expired"."""
        if self.status == "active" and self.not_after <= (now or datetime.now(UTC)):
            return "expired"
        return self.status

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until notAfter (negative once expired), rounded down."""
        return (self.not_after - (now or datetime.now(UTC))) // _DAY

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "serial": self.serial,
            "subject": self.subject,
            "sans": list(self.sans),
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "fingerprint_sha256": self.fingerprint,
            "key_type": self.key_type,
            "extended_key_usage": list(self.eku),
            "ca_generation": self.ca_generation,
            "cert_path": str(self.cert_path) if self.cert_path else None,
            "chain_path": str(self.chain_path) if self.chain_path else None,
            "key_path": str(self.key_path) if self.key_path else None,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class NewRecord:
    """What to insert; ``Inventory.add`` returns the full Record."""

    serial: str
    kind: str
    name: str
    subject: str
    sans: Sequence[str]
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    key_type: str
    eku: Sequence[str] = ()
    ca_generation: int | None = None
    cert_path: Path | None = None
    chain_path: Path | None = None
    key_path: Path | None = None
    status: str = "active"


class Listed(NamedTuple):
    """One inventory row for listing (:meth:`Inventory.iter_listing`): a :class:`Record`'s facts
    with paths as text, in a tuple, which is cheap to build by the hundred thousand."""

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
        if self.status == "active" and self.not_after <= (now or datetime.now(UTC)):
            return "expired"
        return self.status

    def days_left(self, now: datetime | None = None) -> int:
        return (self.not_after - (now or datetime.now(UTC))) // _DAY

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


class Inventory:
    """Typed access to ``inventory.db``. Use :meth:`transaction` to group writes."""

    def __init__(self, db_path: Path, root: Path) -> None:
        self.db_path = db_path
        self.root = root
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction can
            # span the file writes it describes.
            self._db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise InventoryError(f"cannot open inventory {db_path}: {exc}", "check the PKI directory") from None
        self._identity = _file_identity(db_path)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA busy_timeout = 30000")
        self._migrate()
        self._use_wal()

    def _use_wal(self) -> None:
        """WAL: readers (list, inspect, serve) never wait for a writer, and a writer never waits
        for readers (https://sqlite.org/wal.html). The mode is stored in the file, so this is a
        no-op after the first time; a read-only user who cannot switch it still reads."""
        try:
            mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk when COMMIT returns; the store's commit point (journal.py) relies on it.
            self._db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InventoryError(
                f"{self.db_path} is not a grpcpki inventory ({exc})", "restore it from backup or move it aside"
            ) from None
        if version > SCHEMA_VERSION:
            raise InventoryError(
                f"{self.db_path} was written by a newer grpcpki (schema {version}, this one knows {SCHEMA_VERSION})",
                "upgrade grpcpki",
            )
        for step in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in _statements(MIGRATIONS[step]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {step + 1}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the block raises (files and rows agree)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def replaced(self) -> bool:
        """True if ``inventory.db`` is no longer the file this connection reads (the PKI was
        swapped by `init-ca --force` while this process waited for the lock)."""
        return _file_identity(self.db_path) != self._identity

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one statement on the inventory's connection (savepoints, store bookkeeping)."""
        return self._db.execute(sql, params)

    # -- reads ----------------------------------------------------------------------------
    def _row(self, row: sqlite3.Row) -> Record:
        def path(value: str | None) -> Path | None:
            return self.root / value if value else None

        return Record(
            id=row["id"],
            serial=row["serial"],
            kind=row["kind"],
            name=row["name"],
            subject=row["subject"],
            sans=tuple(json.loads(row["sans"])),
            issuer=row["issuer"],
            not_before=_parse(row["not_before"]),
            not_after=_parse(row["not_after"]),
            fingerprint=row["fingerprint"],
            key_type=row["key_type"],
            status=row["status"],
            eku=tuple(json.loads(row["eku"])),
            ca_generation=row["ca_generation"],
            cert_path=path(row["cert_path"]),
            chain_path=path(row["chain_path"]),
            key_path=path(row["key_path"]),
            superseded_by=row["superseded_by"],
            revoked_at=_parse(row["revoked_at"]) if row["revoked_at"] else None,
            revocation_reason=row["revocation_reason"],
            created_at=_parse(row["created_at"]),
        )

    def query(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        name: str | None = None,
        expiring_before: datetime | None = None,
        ca_generation: int | None = None,
    ) -> list[Record]:
        return list(
            self.iter_records(
                kinds=kinds, statuses=statuses, name=name, expiring_before=expiring_before,
                ca_generation=ca_generation,
            )
        )

    def iter_records(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        name: str | None = None,
        expiring_before: datetime | None = None,
        ca_generation: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Record]:
        """Like :meth:`query`, sorted by expiry then name, but streamed: memory stays flat however
        many rows match (``grpcpki list`` over 100,000 certificates).

        Reads through the (status, not_after) index when statuses are given, so the expiry order
        and an ``expiring_before`` bound cost no sort. The rows are read from one snapshot.
        """
        for row in self._stream(kinds, statuses, name, expiring_before, ca_generation, limit):
            yield self._row(row)

    def iter_listing(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        expiring_before: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Listed]:
        """:meth:`iter_records` as :class:`Listed` tuples: the same facts, paths as text.

        What ``grpcpki list`` reads: building three ``Path`` objects and a frozen dataclass per
        row was over half the cost of listing 100,000 certificates (bench/list.py).
        """
        root = str(self.root)
        loads, parse = _string_list, _parse

        def path(value: str | None) -> str | None:
            return None if not value else value if value.startswith("/") else f"{root}/{value}"

        columns = (
            "name, kind, status, serial, subject, sans, issuer, not_before, not_after, fingerprint, key_type, eku, "
            "ca_generation, cert_path, chain_path, key_path, revoked_at, revocation_reason, created_at"
        )
        # Plain tuples (no sqlite3.Row) and named columns: the cheapest rows SQLite hands out.
        for (name, kind, status, serial, subject, sans, issuer, not_before, not_after, fingerprint, key_type, eku,
             ca_generation, cert_path, chain_path, key_path, revoked_at, reason, created_at) in self._stream(
                kinds, statuses, None, expiring_before, None, limit, columns=columns):
            yield Listed(
                name, kind, status, serial, subject, loads(sans), issuer, parse(not_before), parse(not_after),
                fingerprint, key_type, loads(eku), ca_generation, path(cert_path), path(chain_path), path(key_path),
                parse(revoked_at) if revoked_at else None, reason, parse(created_at),
            )

    def _stream(
        self,
        kinds: Sequence[str] | None,
        statuses: Sequence[str] | None,
        name: str | None,
        expiring_before: datetime | None,
        ca_generation: int | None,
        limit: int | None,
        *,
        columns: str | None = None,
    ) -> Iterator[sqlite3.Row]:
        where, params = _where(kinds, statuses, name, expiring_before, ca_generation)
        sql = f"SELECT {columns or '*'} FROM certificates {where} ORDER BY not_after, name"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        # A cursor of its own: a write on self._db while the caller iterates must not reset it.
        cursor = self._db.cursor()
        if columns is not None:
            cursor.row_factory = None  # plain tuples
        try:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(512):
                yield from rows
        finally:
            cursor.close()

    def count(
        self,
        *,
        kinds: Sequence[str] | None = None,
        statuses: Sequence[str] | None = ("active",),
        name: str | None = None,
        expiring_before: datetime | None = None,
        ca_generation: int | None = None,
    ) -> int:
        """How many rows :meth:`iter_records` would yield with the same filters."""
        where, params = _where(kinds, statuses, name, expiring_before, ca_generation)
        return int(self._db.execute(f"SELECT count(*) FROM certificates {where}", params).fetchone()[0])

    def by_serial(self, serial: str) -> Record | None:
        row = self._db.execute("SELECT * FROM certificates WHERE serial = ?", (serial.lower(),)).fetchone()
        return self._row(row) if row else None

    def by_id(self, record_id: int) -> Record | None:
        row = self._db.execute("SELECT * FROM certificates WHERE id = ?", (record_id,)).fetchone()
        return self._row(row) if row else None

    def active_leaf(self, name: str, kind: str | None = None) -> Record | None:
        """The active server or client certificate NAME (of ``kind``). Without ``kind``, a NAME
        that is both a server and a client certificate raises AmbiguousNameError."""
        if kind is not None:
            row = self._db.execute(
                "SELECT * FROM certificates WHERE name = ? AND kind = ? AND status = 'active'", (name, kind)
            ).fetchone()
            return self._row(row) if row else None
        rows = self._db.execute(
            "SELECT * FROM certificates WHERE name = ? AND status = 'active' AND kind IN ('server','client') "
            "ORDER BY kind DESC",
            (name,),
        ).fetchall()
        if len(rows) > 1:
            raise AmbiguousNameError(
                f"{name!r} is both a server and a client certificate",
                f"say which: server/{name} or client/{name}",
            )
        return self._row(rows[0]) if rows else None

    # -- writes ---------------------------------------------------------------------------
    def add(self, new: NewRecord) -> Record:
        def rel(path: Path | None) -> str | None:
            if path is None:
                return None
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                return str(path)

        created = datetime.now(UTC).replace(microsecond=0)
        with self.transaction():
            try:
                cursor = self._db.execute(
                    """INSERT INTO certificates (serial, kind, name, subject, sans, issuer, not_before, not_after,
                       fingerprint, key_type, status, eku, ca_generation, cert_path, chain_path, key_path,
                       created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                    (
                        new.serial.lower(), new.kind, new.name, new.subject, json.dumps(list(new.sans)), new.issuer,
                        _iso(new.not_before), _iso(new.not_after), new.fingerprint, new.key_type, new.status,
                        json.dumps(list(new.eku)), new.ca_generation, rel(new.cert_path), rel(new.chain_path),
                        rel(new.key_path), _iso(created),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "serial" in str(exc):
                    raise InventoryError(f"serial {new.serial} is already in the inventory", "issue again") from None
                # certificates_one_active_leaf: another process (or an earlier item of the same
                # batch) made NAME active first.
                raise AlreadyExistsError(
                    f"{new.kind} certificate {new.name!r} already exists",
                    f"`grpcpki renew {new.name}` renews it; add --replace to reissue it with new names",
                ) from None
        # Built from what was inserted rather than read back: a batch of thousands saves a query each.
        return Record(
            id=int(cursor.lastrowid or 0), serial=new.serial.lower(), kind=new.kind, name=new.name,
            subject=new.subject, sans=tuple(new.sans), issuer=new.issuer,
            not_before=_parse(_iso(new.not_before)), not_after=_parse(_iso(new.not_after)),
            fingerprint=new.fingerprint, key_type=new.key_type, status=new.status, eku=tuple(new.eku),
            ca_generation=new.ca_generation, cert_path=self._abs(rel(new.cert_path)),
            chain_path=self._abs(rel(new.chain_path)), key_path=self._abs(rel(new.key_path)),
            superseded_by=None, revoked_at=None, revocation_reason=None, created_at=created,
        )

    def _abs(self, value: str | None) -> Path | None:
        return self.root / value if value else None

    def set_status(
        self,
        record_id: int,
        status: str,
        *,
        superseded_by: int | None = None,
        revocation_reason: str | None = None,
        paths: tuple[Path | None, Path | None, Path | None] | None = None,
    ) -> None:
        with self.transaction():
            self._db.execute("UPDATE certificates SET status = ? WHERE id = ?", (status, record_id))
            if superseded_by is not None:
                self._db.execute("UPDATE certificates SET superseded_by = ? WHERE id = ?", (superseded_by, record_id))
            if status == "revoked":
                self._db.execute(
                    "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE id = ?",
                    (_iso(datetime.now(UTC)), revocation_reason, record_id),
                )
            if paths is not None:
                rel = [str(p.relative_to(self.root)) if p else None for p in paths]
                self._db.execute(
                    "UPDATE certificates SET cert_path = ?, chain_path = ?, key_path = ? WHERE id = ?",
                    (*rel, record_id),
                )

    def set_paths(self, record_id: int, paths: tuple[Path | None, Path | None, Path | None]) -> None:
        """Where a record's cert.pem, chain.pem and key.pem are now (e.g. after archiving)."""
        rel = [str(p.relative_to(self.root)) if p else None for p in paths]
        with self.transaction():
            self._db.execute(
                "UPDATE certificates SET cert_path = ?, chain_path = ?, key_path = ? WHERE id = ?", (*rel, record_id)
            )

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )


def open_inventory(pki_dir: Path | str) -> Inventory:
    """The inventory of an existing PKI directory, for read-only commands (``grpcpki list``).

    Unlike ``Pki.open`` it imports no cryptography, so a listing starts as fast as Python does.
    """
    root = Path(pki_dir)
    db_path = root / "inventory.db"
    if not root.exists():
        from grpcpki.engine.journal import finish_two_rename_swap

        finish_two_rename_swap(root)
    inventory = Inventory(db_path, root) if db_path.is_file() else None
    if inventory is not None:
        _recover_if_pending(root, inventory)
    # ca.crt too, as Pki.exists: an init-ca killed before its commit point leaves an empty inventory.
    if inventory is None or not (root / "ca.crt").is_file():
        if inventory is not None:
            inventory.close()
        raise NoCAError(
            f"no CA in {root.resolve()}",
            "create one with `grpcpki init-ca`, or point --pki / GRPCPKI_HOME at your PKI directory",
        )
    return inventory


def _recover_if_pending(root: Path, inventory: Inventory) -> None:
    """Apply the store's recovery rule (journal.py) if a writer was killed mid-change and no
    writer holds the lock now; a reader never waits for it."""
    if not (root / ".journal").is_dir() or not any((root / ".journal").iterdir()):
        return
    from grpcpki.engine.errors import GrpcpkiError
    from grpcpki.engine.journal import recover
    from grpcpki.engine.lock import StoreLock

    lock = StoreLock(root)
    try:
        if lock.acquire(blocking=False):
            try:
                recover(root, inventory)
            finally:
                lock.release()
    except (GrpcpkiError, OSError):
        pass  # e.g. a read-only user: the next writer recovers


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


def _where(
    kinds: Sequence[str] | None,
    statuses: Sequence[str] | None,
    name: str | None,
    expiring_before: datetime | None,
    ca_generation: int | None,
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if kinds:
        clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
        params += list(kinds)
    if statuses:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params += list(statuses)
    if name is not None:
        clauses.append("name = ?")
        params.append(name)
    if expiring_before is not None:
        clauses.append("not_after < ?")
        params.append(_iso(expiring_before))
    if ca_generation is not None:
        clauses.append("ca_generation = ?")
        params.append(ca_generation)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        code = line.split("--", 1)[0]
        buffer += code
        if code.rstrip().endswith(";") and sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


__all__ = ["Inventory", "Listed", "NewRecord", "Record", "SCHEMA_VERSION", "open_inventory", "openssl_serial"]
