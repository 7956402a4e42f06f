"""The per-call revocation check of ``grpcpki serve``: is the caller's certificate in crl.pem?

grpcio's Python server credentials cannot take a CRL (docs/failures.md#client-cert-revoked), so the handshake
accepts a revoked client certificate and the servicer refuses the call instead: it reads the
client leaf from the call's auth context (``x509_pem_cert``), parses its serial once per
certificate, and looks it up in :func:`grpcpki.engine.revocation.revoked_serials`, which
re-parses the file only when its stamp changes. The hot path is one ``stat`` call and a set
membership test; a revocation takes effect on the next call, on new and already-open
connections alike, with no restart.

No grpc import here, so the rules are testable without a server.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from grpcpki.engine import cert_info
from grpcpki.engine.errors import PemError
from grpcpki.engine.revocation import revoked_serials
from grpcpki.engine.storage import FileStamp, file_stamp
from grpcpki.greeter.errors import GreeterError

_Stamp = FileStamp | None


@functools.lru_cache(maxsize=1024)
def leaf_serial(pem: bytes) -> int:
    """Serial number of the first certificate in ``pem``; cached, as the same clients call again
    and again. Raises PemError if it cannot be parsed."""
    return cert_info(pem).serial


@dataclass(frozen=True)
class Revoked:
    """A caller whose certificate serial is listed in the CRL."""

    serial: int
    crl: Path
    updated: datetime | None  # when the CRL file was last written (its mtime), if known

    @property
    def serial_hex(self) -> str:
        """Lowercase hex without leading zeros: how `grpcpki list` / `revoke` print serials."""
        return format(self.serial, "x")

    @property
    def updated_words(self) -> str:
        return f"{self.updated:%Y-%m-%d %H:%M:%S}Z" if self.updated else "at an unknown time"

    def message(self, identity: str) -> str:
        """The status message the client gets (greet's explain() keys on 'serial X' and 'is revoked')."""
        return (
            f"client certificate serial {self.serial_hex} ({identity}) is revoked "
            f"({self.crl.name} updated {self.updated_words})"
        )


class RevocationCheck:
    """Client-certificate serials checked against one CRL file, per call.

    A missing file means nothing is revoked (no ``grpcpki revoke`` yet), unless ``must_exist``:
    an explicit ``--crl`` that is not there is a typo, and refused at start. A damaged file at
    start is refused too (:class:`GreeterError`, one line, exit 1): serving as if nothing were
    revoked would quietly undo every revocation.

    A damaged CRL *while running* (fail open or closed?): neither. The last CRL that was read
    stays in force, and ``on_event`` says why once per distinct file state, as the certificate
    reloader does for a bad certificate pair. Failing closed would refuse every client, revoked
    or not, because of a publishing slip (a tool that copies the file in place, a wrong file
    dropped there): one bad write would be a full outage. Failing open would un-revoke every
    certificate, including one revoked for a key compromise. Keeping the last good CRL enforces
    every revocation known so far and serves everyone else; only the revocations added by the
    damaged write wait until it is fixed, and the log says so. A CRL file that disappears is
    treated the same way (grpcpki rewrites it by atomic rename, so it is never missing on the way).
    """

    def __init__(
        self,
        path: Path,
        *,
        must_exist: bool = False,
        on_event: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._fspath = os.fspath(self.path)
        self._on_event = on_event
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise GreeterError(
                f"--crl {self.path} is a directory", f"pass the CRL file itself, e.g. {self.path / 'crl.pem'}"
            )
        if must_exist and not self.path.is_file():
            raise GreeterError(
                f"CRL file {self.path} does not exist",
                "pass the crl.pem that `grpcpki revoke` writes in the PKI directory, or drop --crl",
            )
        # The file state self._good was read at (taken before the read): serials() returns the
        # cached set after a single stat while it holds.
        self._good_stamp = file_stamp(self.path)
        try:
            self._good: frozenset[int] = revoked_serials(self.path)
        except PemError as exc:
            raise GreeterError(
                f"cannot check client certificates for revocation: {exc.message}",
                exc.hint or "rewrite it with `grpcpki revoke NAME`",
            ) from None
        self._present = self.path.is_file()
        # The file state (stamp) already reported as unusable: while it stays so, a call costs a
        # stat, not a re-read and failed parse.
        self._bad: tuple[_Stamp] | None = None

    @property
    def revoked_count(self) -> int:
        return len(self._good)

    def serials(self) -> frozenset[int]:
        """The serials in force: the file's, or the last good ones while it is damaged or gone."""
        try:
            st = os.stat(self._fspath)  # file_stamp, inlined: this runs on every call of serve
            stamp: _Stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._good_stamp:
            return self._good  # the per-call path: one stat, the file is as last read
        bad = self._bad
        if bad is not None and file_stamp(self.path) == bad[0]:
            return self._good
        try:
            current = revoked_serials(self.path)
        except PemError as exc:
            reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
            self._keep(f"CRL {self.path} changed but could not be read: {reason}")
            return self._good
        if current is self._good and bad is None:
            self._good_stamp = stamp  # taken before the read: a change since only costs a re-check
            return current
        if not self.path.is_file():
            if self._present:
                self._keep(f"CRL {self.path} was removed; restore it, or restart serve to run without it")
                return self._good
            return current
        with self._lock:
            changed = current != self._good
            self._good, self._bad, self._present = current, None, True
            self._good_stamp = stamp
        if changed:
            self._emit(True, f"reloaded CRL {self.path}: {len(current)} revoked certificate serial(s)")
        return current

    def check(self, pem: bytes) -> Revoked | None:
        """A :class:`Revoked` if the first certificate in ``pem`` is listed. PemError if unreadable."""
        return self.revoked(leaf_serial(pem))

    def revoked(self, serial: int) -> Revoked | None:
        """A :class:`Revoked` if ``serial`` is listed in the CRL in force now (serve's per-call
        check: the server parses each client certificate once and keeps its serial)."""
        if serial not in self.serials():
            return None
        stamp = file_stamp(self.path)
        updated = datetime.fromtimestamp(stamp[2] / 1e9, UTC) if stamp else None
        return Revoked(serial, self.path, updated)

    def check_auth_context(self, auth_context: Mapping[str, Sequence[bytes]]) -> Revoked | None:
        """:meth:`check` on the client leaf grpc verified (None when the caller sent no certificate)."""
        pems = auth_context.get("x509_pem_cert")
        if not pems:
            return None
        return self.check(pems[0])

    def _keep(self, why: str) -> None:
        stamp = file_stamp(self.path)
        with self._lock:
            if self._bad is not None and self._bad[0] == stamp:
                return
            self._bad = (stamp,)
            self._present = stamp is not None
            count = len(self._good)
        self._emit(False, f"{why}; still enforcing the previous CRL ({count} revoked certificate serial(s))")

    def _emit(self, loaded: bool, message: str) -> None:
        if self._on_event is not None:
            self._on_event(loaded, message)


__all__ = ["RevocationCheck", "Revoked", "leaf_serial"]
