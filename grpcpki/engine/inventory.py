"""The inventory of everything a PKI has issued: SQLite by default, PostgreSQL for teams.

By default one file, ``inventory.db``, beside the certificates. ``--db URL`` / ``GRPCPKI_DB``
(``postgresql+psycopg://user@host:5432/pki``) points it at a PostgreSQL database that several
operators' PKI directories, on several machines, share (docs/team.md).

Statements are SQLAlchemy Core against the tables of :mod:`grpcpki.engine.schema`; the schema is
versioned by the Alembic revisions in ``grpcpki/engine/migrations`` and upgraded in place when a
command opens the inventory (:meth:`Inventory._migrate`). An SQLite file made before Alembic
(``PRAGMA user_version = 1``) holds exactly revision 0001, so it is stamped, not rebuilt. A
database from a newer grpcpki is refused rather than misread.

Transactions are ours, not the driver's: the connection runs in autocommit mode and
:meth:`Inventory.transaction` sends BEGIN (``BEGIN IMMEDIATE`` on SQLite: a writer takes the
write lock up front instead of failing with SQLITE_BUSY when a read turns into a write) and one
COMMIT, which is the store's commit point (journal.py), spanning the file writes it describes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from grpcpki.engine.errors import (
    AlreadyExistsError,
    AmbiguousNameError,
    DatabaseUnavailableError,
    GrpcpkiError,
    InventoryError,
    NoCAError,
)
from grpcpki.engine.listing import (  # noqa: F401 - Listed and openssl_serial are part of this module's API
    DB_ENV,
    INVENTORY_FILE,
    LISTED_COLUMNS,
    Listed,
    _days_left,
    _iso,
    _moment,
    _parse,
    _state,
    _string_list,
    listed_rows,
    openssl_serial,
)
from grpcpki.engine.schema import HEAD_REVISION, KINDS, STATUSES, certificates, meta

# PRAGMA user_version of an SQLite inventory: 1 and 2 were the hand-written schemas, 3 says "Alembic
# keeps this one" so that a grpcpki from before Alembic refuses it instead of writing blind.
SCHEMA_VERSION = 3
# What each hand-written schema holds, table for table: stamped, not rebuilt.
_LEGACY_REVISIONS = {1: "0001", 2: "0002"}
# A transaction-scoped advisory lock key (pg_advisory_xact_lock): two processes that open a fresh
# PostgreSQL database at once migrate it one after the other.
_MIGRATION_LOCK = 0x6772_7063_6D69_6772
IntegrityError = sa_exc.IntegrityError


def database_url(explicit: str | None = None) -> str | None:
    """The database URL in force: ``explicit`` (``--db``), else ``$GRPCPKI_DB``, else None
    (the embedded SQLite file of the PKI directory)."""
    return explicit or os.environ.get(DB_ENV) or None


def inventory_present(root: Path) -> bool:
    """Is there an inventory for ``root``: a database URL, or the SQLite file?"""
    return database_url() is not None or (root / INVENTORY_FILE).is_file()


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

    @property
    def has_key(self) -> bool:
        """Does the row name a private key file? (Not a leaf signed from a CSR: its key stays with
        whoever sent the CSR.) Answered without building the Path when it was not needed yet."""
        return self.path_text("key_path") is not None

    @property
    def has_cert(self) -> bool:
        """Does the row name a certificate file? (As has_key: without building the Path.)"""
        return self.path_text("cert_path") is not None

    def path_text(self, attribute: str) -> str | None:
        """``cert_path``, ``chain_path`` or ``key_path`` as text, without building the Path when it
        was not needed yet (a batch of 10,000 renewals needs only the text of each). The same
        text as ``str(record.cert_path)``: taken as stored only when it is a clean relative path."""
        stored = self.__dict__.get("_stored_paths")
        if stored is not None and attribute not in self.__dict__:
            value = stored[_PATH_FIELDS[attribute]]
            if not value:
                return None
            if not value.startswith(("/", "./")) and "//" not in value and "/." not in value and not value.endswith("/"):
                return f"{stored[0]}{os.sep}{value}"
        path = getattr(self, attribute)
        return None if path is None else str(path)

    def state(self, now: datetime | None = None) -> str:
        """The status, except that an active certificate past its notAfter is "expired"."""
        return _state(self.status, self.not_after, now)

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until notAfter (negative once expired), rounded down."""
        return _days_left(self.not_after, now)

    if not TYPE_CHECKING:  # hidden from mypy: it would make every attribute of a Record legal

        def __getattr__(self, attribute: str) -> Path | None:
            # Only a Record read from the database (Inventory._row) gets here, the first time one
            # of its three paths is asked for: the Path is built then, from the stored text, and
            # kept. A plan of `renew --all` reads 10,000 rows and most never need their paths
            # (building three Paths was a third of the cost of a row: docs/performance.md).
            index = _PATH_FIELDS.get(attribute)
            stored = self.__dict__.get("_stored_paths")
            if index is None or stored is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")
            value = stored[index]
            path = None if not value else stored[0] / value
            self.__dict__[attribute] = path
            return path

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


# Record's path fields -> their place in Record.__dict__["_stored_paths"] (after the root).
_PATH_FIELDS = {"cert_path": 1, "chain_path": 2, "key_path": 3}
# The columns Inventory._row reads, in Record's field order (the table's ``origin`` is not one).
RECORD_COLUMNS = [certificates.c[f.name] for f in fields(Record)]


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
    # Absolute (or relative to the inventory's root); text is fine: a batch builds them as text.
    cert_path: Path | str | None = None
    chain_path: Path | str | None = None
    key_path: Path | str | None = None
    status: str = "active"


class Inventory:
    """Typed access to the inventory. Use :meth:`transaction` to group writes.

    ``url`` (default: :func:`database_url`) selects the database; without one it is the SQLite
    file ``db_path``.
    """

    def __init__(self, db_path: Path, root: Path, url: str | None = None) -> None:
        self.db_path = db_path
        self.root = root
        self.url = url if url is not None else database_url()
        self._in_txn = False
        self._origin_label: str | None = None
        self._engine = _create_engine(self.url, db_path)
        self.dialect = self._engine.dialect.name
        self.shared = self.dialect != "sqlite"
        if self.shared and db_path.is_file():
            # Two inventories for one PKI would each tell half the story (which names are
            # taken, what is revoked): refuse rather than pick one silently.
            self._engine.dispose()
            raise InventoryError(
                f"{root} keeps its own inventory ({db_path.name}), but --db / GRPCPKI_DB names {self.location}",
                "drop --db / unset GRPCPKI_DB for this PKI directory; a shared inventory starts with "
                "`grpcpki --db URL init-ca` in a new PKI directory",
            )
        try:
            self._conn = self._engine.connect()
        except sa_exc.DBAPIError as exc:
            self._engine.dispose()
            # OperationalError is the driver's "could not connect" (server down, refused, timed
            # out): typed apart so a long-running ca-server can answer UNAVAILABLE and retry.
            unreachable = self.shared and isinstance(exc, sa_exc.OperationalError)
            raise (DatabaseUnavailableError if unreachable else InventoryError)(
                f"cannot open the inventory {self.location}: {_first_line(exc)}",
                "check --db / GRPCPKI_DB and that the database server is up" if self.shared
                else "check the PKI directory",
            ) from None
        self._identity = _file_identity(db_path) if not self.shared else None
        try:
            if self.dialect == "sqlite":
                self._conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                self._conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
            self._migrate()
            if self.dialect == "sqlite":
                self._use_wal()
        except BaseException:
            self.close()
            raise

    @property
    def location(self) -> str:
        """Where the rows live, for messages (a URL without its password)."""
        if not self.shared:
            return str(self.db_path)
        return sa.make_url(self.url or "").render_as_string(hide_password=True)

    @property
    def origin(self) -> str:
        """This PKI directory on this machine, among all that share a database (journal markers)."""
        return hashlib.sha256(self.origin_label.encode()).hexdigest()[:16]

    @property
    def origin_label(self) -> str:
        """``HOST:/path/to/pki``: what a shared inventory's rows record as their ``origin``."""
        return f"{socket.gethostname()}:{os.path.realpath(self.root)}"

    def _use_wal(self) -> None:
        """WAL: readers (list, inspect, serve) never wait for a writer, and a writer never waits
        for readers (https://sqlite.org/wal.html). The mode is stored in the file, so this is a
        no-op after the first time; a read-only user who cannot switch it still reads."""
        try:
            mode = self._conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            if str(mode).lower() != "wal":
                self._conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk when COMMIT returns; the store's commit point (journal.py) relies on it.
            self._conn.exec_driver_sql("PRAGMA synchronous = FULL")
        except sa_exc.DBAPIError:
            pass

    def close(self) -> None:
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            self._conn.close()
        self._engine.dispose()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        user_version = 0
        if self.dialect == "sqlite":
            try:
                user_version = int(self._conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
            except sa_exc.DatabaseError as exc:
                raise InventoryError(
                    f"{self.db_path} is not a grpcpki inventory ({_first_line(exc)})",
                    "restore it from backup or move it aside",
                ) from None
            if user_version > SCHEMA_VERSION:
                raise self._newer(f"schema {user_version}, this one knows {SCHEMA_VERSION}")
        if self._revision() == HEAD_REVISION and user_version in (0, SCHEMA_VERSION):
            return
        with self.transaction():
            if self.dialect == "postgresql":
                self._conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _signed(_MIGRATION_LOCK)})
            self._upgrade(user_version)

    def _upgrade(self, user_version: int) -> None:
        """Alembic, on our connection and inside our transaction: all of it lands or none."""
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        config.attributes["connection"] = self._conn
        try:
            if self._revision() is None and user_version in _LEGACY_REVISIONS:
                command.stamp(config, _LEGACY_REVISIONS[user_version])  # made by the hand-written migrations
            command.upgrade(config, "head")
        except CommandError as exc:
            # A revision this grpcpki has never heard of: a newer grpcpki migrated the database.
            raise self._newer(f"Alembic: {exc}") from None
        if self.dialect == "sqlite":
            self._conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _newer(self, detail: str) -> InventoryError:
        return InventoryError(
            f"{self.location} was written by a newer grpcpki ({detail})", "upgrade grpcpki"
        )

    def _revision(self) -> str | None:
        """The Alembic revision the database is at (None before Alembic), without an error when
        the table is missing: a failed statement would abort a PostgreSQL transaction."""
        if self.dialect == "sqlite":
            exists = self._conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).scalar()
        else:
            exists = self._conn.execute(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        if not exists:
            return None
        version = self._conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        return str(version) if version is not None else None

    # -- transactions ---------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT; rolled back if the block raises (files and rows agree)."""
        if self._in_txn:
            yield
            return
        self._conn.exec_driver_sql("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        self._in_txn = True
        try:
            yield
        except BaseException:
            self._in_txn = False
            with contextlib.suppress(sa_exc.DBAPIError):
                self._conn.exec_driver_sql("ROLLBACK")
            raise
        try:
            self._conn.exec_driver_sql("COMMIT")
        except BaseException:
            with contextlib.suppress(sa_exc.DBAPIError):
                self._conn.exec_driver_sql("ROLLBACK")
            raise
        finally:
            self._in_txn = False

    def defer_checkpoint(self) -> bool:
        """For a big transaction, called before its COMMIT: the COMMIT then skips SQLite's
        automatic checkpoint (copying the WAL into the database file, https://sqlite.org/wal.html#ckpt:
        ~0.1 s after `renew --all` of 10,000, with nothing else to do), and :meth:`checkpoint_beside`
        runs it while the caller does its own work. False (nothing deferred) on PostgreSQL."""
        if self.dialect != "sqlite":
            return False
        self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
        return True

    @contextlib.contextmanager
    def checkpoint_beside(self) -> Iterator[None]:
        """After a COMMIT :meth:`defer_checkpoint` prepared: the checkpoint runs in a thread, on a
        connection of its own (a PASSIVE one: it never blocks readers or writers), while the block
        runs (the store's renames after its commit point); it is waited for at the end, and
        automatic checkpoints are back on."""
        worker = threading.Thread(target=_checkpoint, args=(self.db_path,), name="grpcpki-checkpoint", daemon=True)
        worker.start()
        try:
            yield
        finally:
            worker.join()
            self.resume_checkpoints()

    def resume_checkpoints(self) -> None:
        """Automatic checkpoints on again, after :meth:`defer_checkpoint`."""
        with contextlib.suppress(sa_exc.DBAPIError):
            self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default

    def replaced(self) -> bool:
        """True if ``inventory.db`` is no longer the file this connection reads (the PKI was
        swapped by `init-ca --force` while this process waited for the lock)."""
        return not self.shared and _file_identity(self.db_path) != self._identity

    @property
    def in_transaction(self) -> bool:
        return self._in_txn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        """Run one plain SQL statement with ``?`` placeholders on the inventory's connection, inside
        its current transaction (savepoints; the CA service's rows, engine/enroll_store.py).

        Returns a DB-API cursor whose rows answer both ``row[0]`` and ``row["column"]``: on
        SQLite a ``sqlite3.Cursor`` of ``sqlite3.Row``, on PostgreSQL a psycopg cursor with the
        same kind of row (``?`` becomes psycopg's ``%s``). New code should prefer SQLAlchemy Core
        statements on the tables of engine/schema.py.
        """
        driver = self._conn.connection.driver_connection
        assert driver is not None
        if self.dialect == "sqlite":
            cursor = driver.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, tuple(params))
        from psycopg.rows import RowMaker

        def dual_rows(cursor: Any) -> RowMaker[_DualRow]:
            names = [column.name for column in cursor.description or ()]
            return lambda values: _DualRow(names, values)

        pg_cursor = driver.cursor(row_factory=dual_rows)
        if params:
            pg_cursor.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        else:
            pg_cursor.execute(sql)
        return pg_cursor

    def run(self, statement: sa.Executable) -> sa.CursorResult[Any]:
        """Run one SQLAlchemy Core statement on the tables of engine/schema.py, on the inventory's
        connection and inside its current transaction, if one is open (the CA service's rows,
        engine/enroll_store.py; the stored CRL, engine/revocation.py)."""
        return self._conn.execute(statement)

    def timestamp(self, moment: datetime) -> object:
        """``moment`` as a Timestamp column stores it (ISO text on SQLite, timestamptz on PostgreSQL)."""
        return self._ts(moment)

    @staticmethod
    def moment(value: str | datetime) -> datetime:
        """A Timestamp column's value as an aware UTC datetime."""
        return _moment(value)

    def _ts(self, moment: datetime) -> object:
        """A timestamp as the backend stores it: ISO text on SQLite, a UTC datetime on PostgreSQL."""
        if self.dialect == "sqlite":
            return _iso(moment)
        return moment.astimezone(UTC).replace(microsecond=0)

    # -- reads ----------------------------------------------------------------------------
    def _row(self, row: Any) -> Record:
        """A row of :data:`RECORD_COLUMNS` as a Record: the same values its constructor would hold.

        Read by position, and the Record filled in directly rather than through the frozen
        dataclass's ``__init__``: a plan of ``renew --all`` reads every active leaf, and naming the
        21 columns of a SQLAlchemy row (~6 us) and ``__init__`` (~2 us) were half of a row's cost.
        The three paths are built on first use (``Record.__getattr__``).
        """
        (record_id, serial, kind, name, subject, sans, issuer, not_before, not_after, fingerprint, key_type, status,
         eku, ca_generation, cert_path, chain_path, key_path, superseded_by, revoked_at, reason, created_at) = row
        record = object.__new__(Record)
        record.__dict__.update(
            id=record_id, serial=serial, kind=kind, name=name, subject=subject, sans=_string_list(sans), issuer=issuer,
            not_before=_moment(not_before), not_after=_moment(not_after), fingerprint=fingerprint, key_type=key_type,
            status=status, eku=_string_list(eku), ca_generation=ca_generation, superseded_by=superseded_by,
            revoked_at=_moment(revoked_at) if revoked_at else None, revocation_reason=reason,
            created_at=_moment(created_at), _stored_paths=(self.root, cert_path, chain_path, key_path),
        )
        return record

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
        stmt = self._select(RECORD_COLUMNS, kinds, statuses, name, expiring_before, ca_generation, limit)
        for row in self._stream(stmt):
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

        What ``grpcpki list`` reads from PostgreSQL, or from an SQLite file that needs migrating
        or recovering first (the embedded default is read by ``grpcpki.engine.listing`` without
        SQLAlchemy; both convert rows with ``listed_rows``). Building three ``Path`` objects and a
        frozen dataclass per row was over half the cost of listing 100,000 certificates.
        """
        columns = [certificates.c[column] for column in LISTED_COLUMNS]
        stmt = self._select(columns, kinds, statuses, None, expiring_before, None, limit)
        yield from listed_rows(self._stream(stmt, snapshot=True), self.root)

    def _select(
        self,
        columns: list[Any],
        kinds: Sequence[str] | None,
        statuses: Sequence[str] | None,
        name: str | None,
        expiring_before: datetime | None,
        ca_generation: int | None,
        limit: int | None,
    ) -> sa.Select[Any]:
        stmt = sa.select(*columns).where(
            *self._filters(kinds, statuses, name, expiring_before, ca_generation)
        ).order_by(certificates.c.not_after, certificates.c.name)
        return stmt.limit(limit) if limit is not None else stmt

    def _stream(self, stmt: sa.Select[Any], *, snapshot: bool = False) -> Iterator[Any]:
        """The rows of ``stmt``, fetched 512 at a time.

        SQLite: a cursor of its own on this connection (a write while the caller iterates must
        not reset it), which steps through the B-tree as it goes. PostgreSQL, for a listing
        outside a write: a server-side cursor on a second connection in one REPEATABLE READ
        snapshot, so the client never holds the whole result; inside a write transaction the
        rows must come from this connection, which sees the transaction's own changes.
        """
        if self.dialect == "postgresql" and snapshot and not self._in_txn:
            with self._engine.connect() as reader:
                reader = reader.execution_options(isolation_level="REPEATABLE READ")
                with reader.begin():
                    result = reader.execution_options(stream_results=True, yield_per=512).execute(stmt)
                    yield from result
            return
        # yield_per means a server-side cursor on PostgreSQL, which needs a transaction block.
        conn = self._conn.execution_options(yield_per=512) if self.dialect == "sqlite" else self._conn
        result = conn.execute(stmt)
        try:
            yield from result
        finally:
            result.close()

    def _filters(
        self,
        kinds: Sequence[str] | None,
        statuses: Sequence[str] | None,
        name: str | None,
        expiring_before: datetime | None,
        ca_generation: int | None,
    ) -> list[sa.ColumnElement[bool]]:
        c = certificates.c
        clauses: list[sa.ColumnElement[bool]] = []
        if kinds:
            clauses.append(c.kind.in_(list(kinds)))
        if statuses:
            clauses.append(c.status.in_(list(statuses)))
        if name is not None:
            clauses.append(c.name == name)
        if expiring_before is not None:
            clauses.append(c.not_after < self._ts(expiring_before))
        if ca_generation is not None:
            clauses.append(c.ca_generation == ca_generation)
        return clauses

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
        stmt = sa.select(sa.func.count()).select_from(certificates).where(
            *self._filters(kinds, statuses, name, expiring_before, ca_generation)
        )
        return int(self._conn.execute(stmt).scalar() or 0)

    def _one(self, *where: sa.ColumnElement[bool]) -> Record | None:
        row = self._conn.execute(sa.select(*RECORD_COLUMNS).where(*where)).first()
        return self._row(row) if row is not None else None

    def by_serial(self, serial: str) -> Record | None:
        return self._one(certificates.c.serial == serial.lower())

    def by_id(self, record_id: int) -> Record | None:
        return self._one(certificates.c.id == record_id)

    def active_leaf(self, name: str, kind: str | None = None) -> Record | None:
        """The active server or client certificate NAME (of ``kind``). Without ``kind``, a NAME
        that is both a server and a client certificate raises AmbiguousNameError."""
        c = certificates.c
        if kind is not None:
            return self._one(c.name == name, c.kind == kind, c.status == "active")
        rows = self._conn.execute(
            sa.select(*RECORD_COLUMNS).where(c.name == name, c.status == "active", c.kind.in_(["server", "client"]))
            .order_by(c.kind.desc())
        ).all()
        if len(rows) > 1:
            raise AmbiguousNameError(
                f"{name!r} is both a server and a client certificate",
                f"say which: server/{name} or client/{name}",
            )
        return self._row(rows[0]) if rows else None

    # -- writes ---------------------------------------------------------------------------
    def add(self, new: NewRecord) -> Record:
        def rel(path: Path | str | None) -> str | None:
            if path is None:
                return None
            try:
                return str(Path(path).relative_to(self.root))
            except ValueError:
                return str(path)

        created = datetime.now(UTC).replace(microsecond=0)
        with self.transaction():
            try:
                result = self._conn.execute(
                    certificates.insert().values(
                        serial=new.serial.lower(), kind=new.kind, name=new.name, subject=new.subject,
                        sans=json.dumps(list(new.sans)), issuer=new.issuer, not_before=self._ts(new.not_before),
                        not_after=self._ts(new.not_after), fingerprint=new.fingerprint, key_type=new.key_type,
                        status=new.status, eku=json.dumps(list(new.eku)), ca_generation=new.ca_generation,
                        cert_path=rel(new.cert_path), chain_path=rel(new.chain_path), key_path=rel(new.key_path),
                        created_at=self._ts(created), origin=self._row_origin(),
                    )
                )
            except sa_exc.IntegrityError as exc:
                if "serial" in str(exc.orig):
                    raise InventoryError(f"serial {new.serial} is already in the inventory", "issue again") from None
                # certificates_one_active_leaf: another process (or an earlier item of the same
                # batch) made NAME active first.
                raise AlreadyExistsError(
                    f"{new.kind} certificate {new.name!r} already exists",
                    f"`grpcpki renew {new.name}` renews it; add --replace to reissue it with new names",
                ) from None
        record_id = result.inserted_primary_key[0] if result.inserted_primary_key else 0
        # Built from what was inserted rather than read back: a batch of thousands saves a query each.
        return Record(
            id=int(record_id or 0), serial=new.serial.lower(), kind=new.kind, name=new.name,
            subject=new.subject, sans=tuple(new.sans), issuer=new.issuer,
            not_before=_parse(_iso(new.not_before)), not_after=_parse(_iso(new.not_after)),
            fingerprint=new.fingerprint, key_type=new.key_type, status=new.status, eku=tuple(new.eku),
            ca_generation=new.ca_generation, cert_path=self._abs(rel(new.cert_path)),
            chain_path=self._abs(rel(new.chain_path)), key_path=self._abs(rel(new.key_path)),
            superseded_by=None, revoked_at=None, revocation_reason=None, created_at=created,
        )

    def _abs(self, value: str | None) -> Path | None:
        return self.root / value if value else None

    # Bound parameters per statement stay far below SQLite's 32,766 and PostgreSQL's 65,535.
    _IN_CHUNK = 500

    def active_leaf_map(self, names: Sequence[str]) -> dict[tuple[str, str], tuple[int, str | None]]:
        """``(name, kind) -> (id, cert_path as stored)`` of the active leaves among ``names``: what a
        batch re-reads under the lock in one query per 500 names instead of one per certificate."""
        c = certificates.c
        found: dict[tuple[str, str], tuple[int, str | None]] = {}
        unique = list(dict.fromkeys(names))
        for start in range(0, len(unique), self._IN_CHUNK):
            stmt = sa.select(c.id, c.name, c.kind, c.cert_path).where(
                c.status == "active", c.kind.in_(["server", "client"]),
                c.name.in_(unique[start:start + self._IN_CHUNK]),
            )
            for row in self._conn.execute(stmt):
                found[(row.name, row.kind)] = (row.id, row.cert_path)
        return found

    def add_many(
        self, new: Sequence[NewRecord],
        supersede: Sequence[tuple[int, tuple[str | None, str | None, str | None]] | None] = (),
        *, created: datetime | None = None,
    ) -> list[Record]:
        """Insert ``new`` rows in one executemany; ``supersede[i]`` is the active row ``new[i]``
        replaces, as ``(id, archived cert/chain/key paths relative to the root)``, or None (empty:
        nothing is replaced). Paths in ``new`` should be below the root.

        Three statements whatever the size: the old rows leave ``active`` first (the partial unique
        index allows one active leaf per name and kind, and neither SQLite nor PostgreSQL can defer
        a partial index), then the new rows are inserted, then the old rows point at them. The
        caller holds the store lock and has checked that the rows it supersedes are active
        (:meth:`active_leaf_map`), so a count mismatch means the database changed under the lock.
        """
        if not new:
            return []
        assert not supersede or len(supersede) == len(new)
        moment = (created or datetime.now(UTC)).replace(microsecond=0)
        created_ts = self._ts(moment)
        replaced = [(index, entry) for index, entry in enumerate(supersede) if entry is not None]
        rel = self._rel_text
        paths = [(rel(r.cert_path), rel(r.chain_path), rel(r.key_path)) for r in new]
        with self.transaction():
            if self.dialect == "sqlite":
                ids = self._add_many_sqlite(new, paths, replaced, created_ts)
            else:
                ids = self._add_many_core(new, paths, replaced, created_ts)
        root = self.root
        records = []
        for record_id, r, (cert, chain, key) in zip(ids, new, paths, strict=True):
            # As _row builds a Record read back: its paths from the text just stored, on first use.
            record = object.__new__(Record)
            record.__dict__.update(
                id=record_id, serial=r.serial.lower(), kind=r.kind, name=r.name, subject=r.subject, sans=tuple(r.sans),
                issuer=r.issuer, not_before=r.not_before.astimezone(UTC).replace(microsecond=0),
                not_after=r.not_after.astimezone(UTC).replace(microsecond=0), fingerprint=r.fingerprint,
                key_type=r.key_type, status=r.status, eku=tuple(r.eku), ca_generation=r.ca_generation,
                superseded_by=None, revoked_at=None, revocation_reason=None, created_at=moment,
                _stored_paths=(root, cert, chain, key),
            )
            records.append(record)
        return records

    def _add_many_core(
        self, new: Sequence[NewRecord], paths: Sequence[tuple[str | None, str | None, str | None]],
        replaced: Sequence[tuple[int, tuple[int, tuple[str | None, str | None, str | None]]]], created_ts: object,
    ) -> list[int]:
        """add_many's statements through SQLAlchemy Core (PostgreSQL): the new rows' ids, in order."""
        c = certificates.c
        if replaced:
            archive = certificates.update().where(
                c.id == sa.bindparam("old_id"), c.status == "active"
            ).values(status="superseded", cert_path=sa.bindparam("a_cert"), chain_path=sa.bindparam("a_chain"),
                     key_path=sa.bindparam("a_key"))
            result = self._conn.execute(archive, [
                {"old_id": old_id, "a_cert": archived[0], "a_chain": archived[1], "a_key": archived[2]}
                for _index, (old_id, archived) in replaced
            ])
            if self._conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(replaced):
                raise InventoryError(
                    "a certificate of this batch was revoked or reissued while the batch held the lock",
                    "run the command again",
                )
        origin = self._row_origin()
        rows = [
            {
                "serial": r.serial.lower(), "kind": r.kind, "name": r.name, "subject": r.subject,
                "sans": json.dumps(list(r.sans)), "issuer": r.issuer, "not_before": self._ts(r.not_before),
                "not_after": self._ts(r.not_after), "fingerprint": r.fingerprint, "key_type": r.key_type,
                "status": r.status, "eku": json.dumps(list(r.eku)), "ca_generation": r.ca_generation,
                "cert_path": cert, "chain_path": chain, "key_path": key, "created_at": created_ts, "origin": origin,
            }
            for r, (cert, chain, key) in zip(new, paths, strict=True)
        ]
        try:
            # SQLAlchemy's "insertmanyvalues" sends multi-row INSERT ... RETURNING on both
            # backends, 1,000 rows a statement. Ids are matched by serial (unique): asking for
            # them in parameter order (sort_by_parameter_order) makes it send one row a
            # statement on SQLite, 10,000 statements for `renew --all` of 10,000.
            inserted = self._conn.execute(certificates.insert().returning(c.id, c.serial), rows).all()
        except sa_exc.IntegrityError as exc:
            raise self._refusal(exc) from None
        id_of = {str(serial): int(record_id) for record_id, serial in inserted}
        ids = [id_of[r.serial.lower()] for r in new]
        if replaced:
            self._conn.execute(
                certificates.update().where(c.id == sa.bindparam("old_id")).values(
                    superseded_by=sa.bindparam("new_id")
                ),
                [{"old_id": old_id, "new_id": ids[index]} for index, (old_id, _paths) in replaced],
            )
        return ids

    def _add_many_sqlite(
        self, new: Sequence[NewRecord], paths: Sequence[tuple[str | None, str | None, str | None]],
        replaced: Sequence[tuple[int, tuple[int, tuple[str | None, str | None, str | None]]]], created_ts: object,
    ) -> list[int]:
        """add_many's three statements on SQLite, as plain executemany of tuples: building and
        binding SQLAlchemy parameters per row was ~70% of add_many at 10,000 rows. The same
        statements, the same order, the same checks as _add_many_core."""
        conn = self._conn
        if replaced:
            result = conn.exec_driver_sql(
                "UPDATE certificates SET status = 'superseded', cert_path = ?, chain_path = ?, key_path = ? "
                "WHERE id = ? AND status = 'active'",
                [(archived[0], archived[1], archived[2], old_id) for _index, (old_id, archived) in replaced],
            )
            if result.rowcount != len(replaced):
                raise InventoryError(
                    "a certificate of this batch was revoked or reissued while the batch held the lock",
                    "run the command again",
                )
        origin = self._row_origin()
        rows = [
            (r.serial.lower(), r.kind, r.name, r.subject, json.dumps(list(r.sans)), r.issuer, _iso(r.not_before),
             _iso(r.not_after), r.fingerprint, r.key_type, r.status, json.dumps(list(r.eku)), r.ca_generation,
             cert, chain, key, created_ts, origin)
            for r, (cert, chain, key) in zip(new, paths, strict=True)
        ]
        # The transaction holds SQLite's write lock (BEGIN IMMEDIATE): nobody else inserts, so the
        # new rows are exactly those above the largest id now.
        (before,) = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM certificates").one()
        try:
            conn.exec_driver_sql(
                "INSERT INTO certificates (serial, kind, name, subject, sans, issuer, not_before, not_after, "
                "fingerprint, key_type, status, eku, ca_generation, cert_path, chain_path, key_path, created_at, "
                "origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sa_exc.IntegrityError as exc:
            raise self._refusal(exc) from None
        id_of = {serial: record_id for record_id, serial in conn.exec_driver_sql(
            "SELECT id, serial FROM certificates WHERE id > ?", (before,))}
        ids = [id_of[r.serial.lower()] for r in new]
        if replaced:
            conn.exec_driver_sql(
                "UPDATE certificates SET superseded_by = ? WHERE id = ?",
                [(ids[index], old_id) for index, (old_id, _paths) in replaced],
            )
        return ids

    def _rel_text(self, path: Path | str | None) -> str | None:
        if path is None:
            return None
        text, root = str(path), str(self.root)
        # Batch paths are built below the root: a prefix cut is exact, and far cheaper than relative_to.
        if text.startswith(root + os.sep):
            return text[len(root) + 1:]
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return text  # outside the PKI directory: kept as given, as Inventory.add does

    @staticmethod
    def _refusal(exc: sa_exc.IntegrityError) -> GrpcpkiError:
        if "serial" in str(exc.orig):
            return InventoryError("a new serial is already in the inventory", "issue again")
        return AlreadyExistsError(
            "a certificate of this batch is already active under its name and kind",
            "`grpcpki renew NAME` renews it; add --replace to reissue it with new names",
        )

    def set_status(
        self,
        record_id: int,
        status: str,
        *,
        superseded_by: int | None = None,
        revocation_reason: str | None = None,
        paths: tuple[Path | None, Path | None, Path | None] | None = None,
    ) -> None:
        """Move a record to ``status``. Revoked is final: a conditional update never takes a
        revoked certificate back to active or superseded, whichever process asks (RFC 5280 5.3.1:
        only certificateHold may be undone, and grpcpki never puts a certificate on hold)."""
        c = certificates.c
        values: dict[str, object] = {"status": status}
        if superseded_by is not None:
            values["superseded_by"] = superseded_by
        if status == "revoked":
            values["revoked_at"] = self._ts(datetime.now(UTC))
            values["revocation_reason"] = revocation_reason
        if paths is not None:
            values.update(zip(("cert_path", "chain_path", "key_path"), self._rel_paths(paths), strict=True))
        stmt = certificates.update().where(c.id == record_id)
        if status in ("active", "superseded"):
            stmt = stmt.where(c.status != "revoked")
        with self.transaction():
            if self._conn.execute(stmt.values(**values)).rowcount == 0 and self.by_id(record_id) is not None:
                raise InventoryError(
                    f"certificate #{record_id} was revoked meanwhile; it cannot become {status}",
                    "issue a new certificate for this name",
                )

    def _rel_paths(self, paths: tuple[Path | None, Path | None, Path | None]) -> list[str | None]:
        return [str(p.relative_to(self.root)) if p else None for p in paths]

    def set_paths(self, record_id: int, paths: tuple[Path | None, Path | None, Path | None]) -> None:
        """Where a record's cert.pem, chain.pem and key.pem are now (e.g. after archiving)."""
        cert_path, chain_path, key_path = self._rel_paths(paths)
        with self.transaction():
            self._conn.execute(
                certificates.update().where(certificates.c.id == record_id).values(
                    cert_path=cert_path, chain_path=chain_path, key_path=key_path
                )
            )

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self._conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
        return str(value) if value is not None else default

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction():
            if value is None:
                self._conn.execute(meta.delete().where(meta.c.key == key))
                return
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                pg_stmt = pg_insert(meta).values(key=key, value=value)
                self._conn.execute(pg_stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                lite_stmt = sqlite_insert(meta).values(key=key, value=value)
                self._conn.execute(
                    lite_stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value})
                )

    def _row_origin(self) -> str | None:
        # Shared inventories only: every row of an SQLite file is its own directory's.
        if not self.shared:
            return None
        if self._origin_label is None:
            self._origin_label = self.origin_label
        return self._origin_label

    def origins(self) -> dict[int, str | None]:
        """Row id -> the ``HOST:/path`` of the PKI directory that made it (None: an SQLite
        inventory, or a row from before revision 0005), for leaf rows that name files."""
        c = certificates.c
        stmt = sa.select(c.id, c.origin).where(c.kind.in_(("server", "client")), c.cert_path.is_not(None))
        return {row_id: origin for row_id, origin in self._conn.execute(stmt)}

    def forget_meta(self, prefix: str, *, keep: str) -> None:
        """Delete every meta key starting with ``prefix`` except ``keep`` (old commit markers)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.transaction():
            self._conn.execute(meta.delete().where(meta.c.key.like(pattern, escape="\\"), meta.c.key != keep))


def open_inventory(pki_dir: Path | str) -> Inventory:
    """The inventory of an existing PKI directory, for read-only commands (``grpcpki list``).

    Unlike ``Pki.open`` it imports no cryptography, so a listing starts as fast as Python does.
    """
    root = Path(pki_dir)
    db_path = root / INVENTORY_FILE
    if not root.exists():
        from grpcpki.engine.journal import finish_two_rename_swap

        finish_two_rename_swap(root)
    inventory = Inventory(db_path, root) if inventory_present(root) else None
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


class _DualRow(tuple[Any, ...]):
    """A row that answers ``row[0]`` and ``row["name"]``, like ``sqlite3.Row`` (see Inventory.execute)."""

    _names: list[str]

    def __new__(cls, names: list[str], values: Sequence[Any]) -> _DualRow:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _create_engine(url: str | None, db_path: Path) -> sa.Engine:
    """An engine for one connection in autocommit mode (transactions are ours, see above)."""
    try:
        parsed = sa.make_url(url) if url else sa.URL.create("sqlite", database=str(db_path))
    except sa_exc.ArgumentError:
        raise InventoryError(
            f"{url!r} is not a database URL",
            "use e.g. --db postgresql+psycopg://grpcpki@db.example:5432/pki (or set GRPCPKI_DB)",
        ) from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "sqlite":
        connect_args["timeout"] = 30
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not SQLAlchemy's psycopg2 default
        # Timestamps come back in UTC whatever the server's or the role's TimeZone says.
        connect_args.update(options="-c TimeZone=UTC", connect_timeout=10, application_name="grpcpki")
    else:
        raise InventoryError(
            f"grpcpki keeps its inventory in SQLite or PostgreSQL, not {backend!r}",
            "use a postgresql+psycopg://user@host:5432/dbname URL, or no --db for the PKI's own SQLite file",
        )
    try:
        # NullPool: a command holds one connection for its life and closes it; nothing to pool.
        return sa.create_engine(parsed, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args)
    except (ImportError, sa_exc.NoSuchModuleError) as exc:
        raise InventoryError(
            f"cannot use {parsed.drivername}: {exc}",
            "install the PostgreSQL driver: pip install 'grpcpki[postgresql]'",
        ) from None


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _signed(key: int) -> int:
    """A 64-bit key as PostgreSQL's signed bigint."""
    return key - (1 << 64) if key >= 1 << 63 else key


def _checkpoint(db_path: Path) -> None:
    """Inventory.checkpoint_beside's thread: nothing it could fail at loses data (the WAL stays,
    and the next checkpoint or the last connection's close does the work)."""
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


__all__ = [
    "DB_ENV",
    "INVENTORY_FILE",
    "Inventory",
    "IntegrityError",
    "KINDS",
    "Listed",
    "NewRecord",
    "Record",
    "SCHEMA_VERSION",
    "STATUSES",
    "database_url",
    "inventory_present",
    "open_inventory",
    "openssl_serial",
]
