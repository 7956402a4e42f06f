"""The PKI lock: one writer at a time (the design is described in :mod:`grpcpki.engine.journal`).

``PKI/.lock`` is locked with ``flock(2)``. The kernel releases it when the holder exits, even
on SIGKILL, so there is never a stale lock to clean up. While held it names its holder
(``PID`` and command on two lines) so a second process can say whom it waits for.

``flock`` is one machine's lock. When the inventory is a shared PostgreSQL database (``--db`` /
``GRPCPKI_DB``), the rows are shared by PKI directories on many machines, so the writer also
holds the database's advisory lock (:class:`DatabaseLock`), always after the file lock (one
order, no deadlock): the file lock keeps this directory's files and journal to one writer, the
advisory lock keeps the shared rows to one writer across machines. The backend decides,
through the database URL in force, not the caller.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from grpcpki.engine.durations import DurationError, parse_duration
from grpcpki.engine.errors import GrpcpkiError, LockTimeoutError

LOCK_FILE = ".lock"
LOCK_TIMEOUT_ENV = "GRPCPKI_LOCK_TIMEOUT"
# Long enough for a `renew --all` of a few thousand certificates; short enough that a cron
# job stuck behind a forgotten prompt fails the same hour instead of piling up.
DEFAULT_LOCK_TIMEOUT = 120.0
# How long a writer waits quietly before saying whom it waits for: most waits are a
# sub-second `issue` finishing.
_QUIET_WAIT = 0.5
_POLL = 0.02
# Each try of the advisory lock is a round trip to the database server.
_SHARED_POLL = 0.1


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, as it wrote itself into the lock file (best effort)."""

    pid: int | None
    command: str

    def describe(self) -> str:
        who = f"PID {self.pid}" if self.pid else "another process"
        return f"{who} ({self.command})" if self.command else who


def default_command() -> str:
    """``grpcpki renew`` for the running process: what another waiter is told it waits for."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("__main__.py", "-m", "-c"):
        name = "grpcpki"
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    return " ".join([name, *words])


def lock_timeout_from_env(default: float = DEFAULT_LOCK_TIMEOUT) -> float:
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if not text:
        return default
    # The same DURATION spelling as --lock-timeout (docs/commands.md, "Durations").
    try:
        return parse_duration(text, maximum=timedelta(days=1)).total_seconds()
    except DurationError as exc:
        raise GrpcpkiError(
            f"{LOCK_TIMEOUT_ENV}={text[:40]!r}: {exc.message}", f"set {LOCK_TIMEOUT_ENV} to e.g. 2m or 30s, or unset it"
        ) from None


class StoreLock:
    """A re-entrant (within the process) exclusive lock on a PKI directory."""

    def __init__(
        self,
        directory: Path,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[LockHolder], None] | None = None,
        command: str | None = None,
        database: str | None = None,
    ) -> None:
        """``database``: the shared inventory's URL (default: ``--db`` / ``GRPCPKI_DB``, if any)."""
        self.directory = directory
        self.path = directory / LOCK_FILE
        self.timeout = timeout
        self.on_wait = on_wait
        self.command = command
        self._fd: int | None = None
        self._depth = 0
        self.database = database if database is not None else _shared_database_url()
        self._shared = DatabaseLock(self.database) if self.database else None

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock (waiting up to ``timeout`` if ``blocking``); False if not blocking and busy."""
        if self._depth:
            self._depth += 1
            return True
        deadline = time.monotonic() + self.timeout
        told = False
        started = time.monotonic()
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise GrpcpkiError(f"cannot lock {self.path}: {exc.strerror}", "check the PKI directory") from None
                holder = self._read_holder(fd)
                os.close(fd)
                if not blocking:
                    return False
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeoutError(
                        f"gave up after {self.timeout:g}s waiting for {holder.describe()}, which holds the lock on "
                        f"{self.directory}",
                        f"let it finish and retry, or wait longer with --lock-timeout DURATION (or {LOCK_TIMEOUT_ENV})",
                    ) from None
                if not told and now - started >= _QUIET_WAIT and self.on_wait is not None:
                    told = True
                    self.on_wait(holder)
                time.sleep(_POLL)
                continue
            # `init-ca --force` swaps the whole directory: a lock taken on the old .lock file
            # no longer guards this path, so take the new one instead.
            if not _same_file(fd, self.path):
                os.close(fd)
                continue
            self._fd = fd
            self._depth = 1
            self._write_holder(fd)
            if self._shared is None:
                return True
            try:
                if self._acquire_shared(blocking, deadline):
                    return True
            except BaseException:
                self._depth = 1
                self.release()
                raise
            self.release()
            return False

    def _acquire_shared(self, blocking: bool, deadline: float) -> bool:
        """The advisory lock of the shared inventory, waited for like the file lock."""
        assert self._shared is not None
        started = time.monotonic()
        told = False
        command = self.command or default_command()
        while True:
            if self._shared.try_acquire(command):
                return True
            if not blocking:
                return False
            holder = self._shared.holder()
            now = time.monotonic()
            if now >= deadline:
                raise LockTimeoutError(
                    f"gave up after {self.timeout:g}s waiting for {holder.describe()}, which holds the lock on the "
                    f"shared inventory {self._shared.location}",
                    f"let it finish and retry, or wait longer with --lock-timeout DURATION (or {LOCK_TIMEOUT_ENV})",
                )
            if not told and now - started >= _QUIET_WAIT and self.on_wait is not None:
                told = True
                self.on_wait(holder)
            time.sleep(_SHARED_POLL)

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth or self._fd is None:
            return
        if self._shared is not None:
            self._shared.release()  # before the file lock: the reverse of the taking order
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock

    def adopt(self, fd: int) -> None:
        """Hold an already-locked descriptor of the same path (after a directory swap)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise GrpcpkiError(
                f"cannot open the lock file {self.path}: {exc.strerror}",
                "run as the owner of the PKI directory (writing needs the lock)",
            ) from None

    def _write_holder(self, fd: int) -> None:
        text = f"{os.getpid()}\n{self.command or default_command()}\n".encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)

    @staticmethod
    def _read_holder(fd: int) -> LockHolder:
        try:
            text = os.pread(fd, 512, 0).decode(errors="replace")
        except OSError:
            return LockHolder(None, "")
        pid_text, _, rest = text.partition("\n")
        command = rest.splitlines()[0] if rest else ""
        return LockHolder(int(pid_text) if pid_text.strip().isdigit() else None, command.strip())

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


# -- the shared inventory's lock ---------------------------------------------------------------------
# pg_advisory_lock(int4, int4) key: "grpc" "pki". One per database: every PKI directory that
# shares it writes one at a time, on any machine.
ADVISORY_KEY = (0x67727063, 0x706B6900)


class DatabaseLock:
    """The writer lock of a shared PostgreSQL inventory: a session-level advisory lock held on
    a connection of its own for the whole command. The server drops it when that connection
    ends, so a killed writer (even SIGKILL, or a machine that vanishes, once TCP keepalive
    notices) leaves no stale lock. Its holder names itself in ``application_name``, which
    pg_stat_activity shows to a waiter."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    @property
    def location(self) -> str:
        import sqlalchemy as sa

        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "(unparsable URL)"

    def try_acquire(self, command: str) -> bool:
        """One attempt; True once held (the connection stays open until :meth:`release`)."""
        conn = self._conn or self._connect(command)
        if conn.execute(_sql("SELECT pg_try_advisory_lock(:a, :b)"), _key()).scalar():
            self._conn = conn
            return True
        self._conn = conn  # keep it for the next attempt: one connection per waiter
        return False

    def holder(self) -> LockHolder:
        if self._conn is None:
            return LockHolder(None, "")
        row = self._conn.execute(
            _sql(
                "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = :a AND l.objid = :b AND l.objsubid = 2 AND l.granted"
            ),
            _key(),
        ).first()
        if row is None:
            return LockHolder(None, "")
        # application_name is "grpcpki PID@HOST COMMAND" (see _connect).
        words = str(row[0] or "").split(" ", 2)
        if len(words) >= 2 and words[0] == "grpcpki" and "@" in words[1]:
            pid_text, _, host = words[1].partition("@")
            command = words[2] if len(words) > 2 else ""
            return LockHolder(int(pid_text) if pid_text.isdigit() else None, f"{command} on {host}".strip())
        return LockHolder(None, str(row[0] or row[1] or ""))

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.execute(_sql("SELECT pg_advisory_unlock(:a, :b)"), _key())
        with contextlib.suppress(Exception):
            conn.close()

    def _connect(self, command: str) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        from grpcpki.engine.errors import InventoryError

        parsed = sa.make_url(self.url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # PostgreSQL keeps 63 bytes of application_name.
        name = f"grpcpki {os.getpid()}@{socket.gethostname()} {command}".encode()[:63].decode(errors="ignore")
        engine = sa.create_engine(
            parsed, poolclass=NullPool, isolation_level="AUTOCOMMIT",
            connect_args={"application_name": name, "connect_timeout": 10},
        )
        try:
            return engine.connect()
        except sa.exc.DBAPIError as exc:
            detail = (str(getattr(exc, "orig", exc)).strip().splitlines() or ["no detail"])[0]
            raise InventoryError(
                f"cannot reach the shared inventory to lock it: {detail}",
                "check --db / GRPCPKI_DB and that the database server is up",
            ) from None


def _key() -> dict[str, int]:
    return {"a": ADVISORY_KEY[0], "b": ADVISORY_KEY[1]}


def _sql(text: str) -> Any:
    import sqlalchemy as sa

    return sa.text(text)


def _shared_database_url() -> str | None:
    """The database URL in force, if the inventory is shared (not the PKI's own SQLite file)."""
    from grpcpki.engine.inventory import database_url

    url = database_url()
    return url if url and not url.startswith("sqlite") else None


def lock_fd_for(path: Path) -> int:
    """Open and lock ``path/.lock`` of a directory nobody else can see yet (a staging PKI)."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


__all__ = [
    "ADVISORY_KEY",
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "DatabaseLock",
    "LockHolder",
    "StoreLock",
    "lock_timeout_from_env",
]
