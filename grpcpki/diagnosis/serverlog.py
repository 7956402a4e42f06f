"""Say in plain words why ``grpcpki serve`` refused a handshake: rewrite grpc core's log lines.

grpc's Python server never sees a handshake it rejected: no servicer runs, no interceptor, no
callback. The only record is grpc core's own log line on stderr (docs/failures.md#server-rejected-client:
``I... Handshake failed with error SSL_ERROR_SSL: ...PEER_DID_NOT_RETURN_A_CERTIFICATE`` /
``CERTIFICATE_VERIFY_FAILED: <reason>`` / ``WRONG_VERSION_NUMBER``; the SNI callback's
``E... No match found for server name: X``, docs/failures.md#hostname-mismatch). They are written by C++ straight to file
descriptor 2, below anything Python can hook (``logging`` and ``sys.stderr`` never see them),
and grpcio has no public log-sink API. So :class:`StderrRewriter` takes the descriptor itself:

* fd 2 becomes the write end of a pipe; a daemon thread reads it, rewrites each line that
  :func:`explain_grpc_line` knows, and passes every other byte through unchanged;
* Python's ``sys.stderr`` is re-pointed at a duplicate of the real stderr, so what Python prints
  (rich status lines) never waits on the thread and rich still detects a terminal;
* faulthandler, if enabled, is re-pointed at the real stderr too, so a crash report is not lost
  in the pipe of a dying process;
* :meth:`StderrRewriter.stop` restores fd 2, which closes the pipe; the thread drains what is
  left and exits.

:func:`explain_grpc_line` is pure and table-tested; its words are :mod:`.catalogue` rows'
``server_log``. The rewritten line keeps grpc's reason token in parentheses, so searching the log
for it still works.
"""

from __future__ import annotations

import faulthandler
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Self, TextIO

from grpcpki.diagnosis import catalogue

__all__ = ["StderrRewriter", "explain_grpc_line"]

# glog/absl prefix: severity, MMDD, time, thread id, file:line]
_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w./+-]+:\d+\] (?P<msg>.*)$")
_SNI = "No match found for server name: "
_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")


class _Words(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def explain_grpc_line(line: str, *, trusted: str | None = None, names: Sequence[str] = ()) -> str | None:
    """Plain words for one grpc core log line about a refused handshake, or None to keep it as is.

    ``trusted`` names the CA(s) this server trusts for clients; ``names`` are the SANs of its own
    certificate (for the SNI line). The words are the catalogue row's ``server_log``.
    """
    match = _LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    msg = match.group("msg")
    words = _Words(trusted=trusted or "the CA in --ca", names=", ".join(names) or "its SANs")
    if msg.startswith(_SNI):
        # The SNI matched none of this server's certificates; the client's hostname check (against
        # the same name) will most likely fail. A hint, not proof (docs/failures.md#hostname-mismatch).
        asked = msg[len(_SNI) :].strip()
        words.update(asked=asked, have=", ".join(names) or "no names")
        token = f"No match found for server name: {asked}"
    elif msg.startswith("Handshake failed with error"):
        token = ""
    else:
        return None
    row = catalogue.match(msg, ["server-log"], stack="grpcio")
    if row is None or row.server_log is None:
        unknown = _VERIFY.search(msg)
        if unknown is None:
            return None
        reason = unknown.group(1).strip()
        return f"refused a client certificate: {reason} (grpc: CERTIFICATE_VERIFY_FAILED: {reason})"
    sig = max((s.text for s in row.signatures if s.seen == "server-log" and s.text.lower() in msg.lower()), key=len)
    token = token or sig
    if row.kind == "client-plaintext-server-tls":
        # A plaintext gRPC client (insecure channel) on a TLS port, or curl without TLS.
        words["what"] = (
            "an HTTP/1 request (curl or a browser without TLS?)"
            if sig == "HTTP_REQUEST"
            else "a client that does not speak TLS (a plaintext / insecure-channel client?)"
        )
    if row.kind == "server-cert-refused":
        words["alert"] = sig.rsplit("ALERT_", 1)[-1].lower()
    # grpc's own token stays in parentheses, so searching the log for it still works.
    return f"{row.server_log.format_map(words)} (grpc: {token})"


class StderrRewriter:
    """Route file descriptor 2 through a pipe and ``rewrite`` each line (None keeps a line).

    ``start()`` returns False (and changes nothing) if the descriptors cannot be set up; use
    as a context manager or call ``stop()``.
    """

    def __init__(self, rewrite: Callable[[str], str | None]) -> None:
        self._rewrite = rewrite
        self._saved: int | None = None
        self._read: int | None = None
        self._thread: threading.Thread | None = None
        self._python_stderr: TextIO | None = None

    def start(self) -> bool:
        if self._thread is not None:
            return True
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return False
        try:
            read, write = os.pipe()
        except OSError:
            os.close(saved)
            return False
        os.dup2(write, 2)
        os.close(write)
        self._saved, self._read = saved, read
        self._python_stderr = sys.stderr
        encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
        # Line-buffered: print()'s text and its newline leave in one write(), so a line from the
        # thread cannot land in the middle of it.
        sys.stderr = os.fdopen(saved, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)
        if faulthandler.is_enabled():
            faulthandler.enable(file=saved)
        self._thread = threading.Thread(target=self._pump, name="grpc-log-rewriter", daemon=True)
        self._thread.start()
        return True

    def _pump(self) -> None:
        assert self._read is not None
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line + b"\n")
        if pending:
            self._emit(pending)
        os.close(self._read)

    def _emit(self, raw: bytes) -> None:
        data = raw
        try:
            text = raw.decode("utf-8", "replace")
            new = self._rewrite(text.rstrip("\n"))
            if new is not None:
                data = (new + "\n").encode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - a rewriting bug must never eat a log line
            data = raw
        assert self._saved is not None
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._saved, view)
            except InterruptedError:
                continue
            except OSError:
                return
            view = view[written:]

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None or self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        # Restoring fd 2 drops the pipe's last write end: the thread reads EOF after the rest.
        os.dup2(self._saved, 2)
        self._thread.join(timeout)
        if self._python_stderr is not None:
            sys.stderr = self._python_stderr
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        if not self._thread.is_alive():
            os.close(self._saved)
        self._thread = None
        self._saved = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
