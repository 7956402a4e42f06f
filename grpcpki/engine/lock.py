"""The PKI lock: one writer at a time (the design is described in :mod:`grpcpki.engine.journal`).

``PKI/.lock`` is locked with ``flock(2)``. The kernel releases it when the holder exits, even
on SIGKILL, so there is never a stale lock to clean up. While held it names its holder
(``PID`` and command on two lines) so a second process can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

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
    ) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self.timeout = timeout
        self.on_wait = on_wait
        self.command = command
        self._fd: int | None = None
        self._depth = 0

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
            return True

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth or self._fd is None:
            return
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


__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_FILE", "LOCK_TIMEOUT_ENV", "LockHolder", "StoreLock", "lock_timeout_from_env"]
