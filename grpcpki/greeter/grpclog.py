"""Say in plain words why ``grpcpki serve`` refused a handshake: rewrite grpc core's log lines.

grpc's Python server never sees a handshake it rejected: no servicer runs, no interceptor, no
callback. The only record is grpc core's own log line on stderr (grpc-errors.md rows b, c, i, k,
m: ``I... Handshake failed with error SSL_ERROR_SSL: ...PEER_DID_NOT_RETURN_A_CERTIFICATE`` /
``CERTIFICATE_VERIFY_FAILED: <reason>`` / ``WRONG_VERSION_NUMBER``; row e: the SNI callback's
``E... No match found for server name: X``). They are written by C++ straight to file
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

:func:`explain_grpc_line` is pure and table-tested. The rewritten line keeps grpc's reason
token in parentheses, so searching the log for it still works.
"""

from __future__ import annotations

import faulthandler
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Self, TextIO

__all__ = ["StderrRewriter", "explain_grpc_line"]

# glog/absl prefix: severity, MMDD, time, thread id, file:line]
_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w./+-]+:\d+\] (?P<msg>.*)$")
_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_TOO_LONG", "PACKET_LENGTH_TOO_LONG")

# BoringSSL X509 verify reasons for the *client's* chain (the server verifies it) -> words.
_CLIENT_REASONS: dict[str, str] = {
    "unable to get local issuer certificate": (
        "refused a client certificate that is not issued by a CA this server trusts ({trusted}) — issue the "
        "client's certificate from that CA, or add the client's CA to this server's --ca"
    ),
    "self signed certificate": (
        "refused a self-signed client certificate — clients must present one issued by {trusted}"
    ),
    "self signed certificate in certificate chain": (
        "refused a client certificate whose chain ends in a root this server does not trust ({trusted})"
    ),
    "certificate has expired": (
        "refused an expired client certificate — the client must renew it (`grpcpki renew NAME`); "
        "if it looks valid, check the clocks"
    ),
    "certificate is not yet valid": (
        "refused a client certificate that is not valid yet — one of the clocks is wrong, or it was issued for later"
    ),
    "unsupported certificate purpose": (
        "refused a certificate that is not made for clients (its extended key usage lacks clientAuth) — "
        "issue a client certificate: `grpcpki issue client NAME`"
    ),
    "invalid CA certificate": (
        "refused a client certificate whose chain holds an intermediate that is not a CA (CA:FALSE)"
    ),
    "certificate revoked": "refused a revoked client certificate",
}


# TLS alerts a *client* sends when it refuses this server's certificate, as BoringSSL names them
# in the server's 'Handshake failed' line. A grpcio client that fails its hostname check, and Go
# clients for most failures, send bad_certificate; the alert alone cannot say which check failed.
_SERVER_CERT_ALERTS: dict[str, str] = {
    "TLSV1_ALERT_UNKNOWN_CA": (
        "a client refused this server's certificate: it does not trust the CA that issued it — give the "
        "client this PKI's ca.crt (its --ca / RootCAs)"
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "a client refused this server's certificate (bad_certificate): most often the name it dialed is not "
        "among {names}, or it does not trust the issuing CA — `grpcpki probe HOST:PORT` from the client's "
        "side names which"
    ),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (
        "a client refused this server's certificate as expired (or the client's clock is wrong) — "
        "`grpcpki renew NAME` and this server picks the new one up without a restart"
    ),
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": (
        "a client refused this server's certificate as unsuitable (its key usage / serverAuth EKU) — "
        "reissue it with `grpcpki issue server NAME --replace`"
    ),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": (
        "a client refused this server's certificate (certificate_unknown) — `grpcpki probe HOST:PORT` "
        "from the client's side says why"
    ),
}


def explain_grpc_line(line: str, *, trusted: str | None = None, names: Sequence[str] = ()) -> str | None:
    """Plain words for one grpc core log line about a refused handshake, or None to keep it as is.

    ``trusted`` names the CA(s) this server trusts for clients; ``names`` are the SANs of its own
    certificate (for the SNI line).
    """
    match = _LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    msg = match.group("msg")
    trusted_words = trusted or "the CA in --ca"
    if msg.startswith("Handshake failed with error"):
        if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in msg:
            # grpc-errors.md b: the server requires a client certificate and none came.
            return (
                f"refused a client that sent no certificate — clients must present one issued by {trusted_words} "
                "(greet --name CLIENT; or serve --tls to not require one) (grpc: PEER_DID_NOT_RETURN_A_CERTIFICATE)"
            )
        verify = _VERIFY.search(msg)
        if verify is not None:
            reason = verify.group(1).strip()
            words = _CLIENT_REASONS.get(reason, f"refused a client certificate: {reason}")
            return f"{words.format(trusted=trusted_words)} (grpc: CERTIFICATE_VERIFY_FAILED: {reason})"
        alert = next((a for a in _SERVER_CERT_ALERTS if a in msg), None)
        if alert is not None:
            words = _SERVER_CERT_ALERTS[alert].format(names=", ".join(names) or "its SANs")
            return f"{words} (grpc: {alert})"
        token = next((t for t in _NOT_TLS if t in msg), None)
        if token is not None:
            # grpc-errors.md m: a plaintext gRPC client (insecure channel) on a TLS port.
            what = "an HTTP/1 request (curl or a browser without TLS?)" if token == "HTTP_REQUEST" else (
                "a client that does not speak TLS (a plaintext / insecure-channel client?)"
            )
            return f"refused {what} — clients must dial this port with TLS (grpc: {token})"
        return None
    prefix = "No match found for server name: "
    if msg.startswith(prefix):
        asked = msg[len(prefix) :].strip()
        have = ", ".join(names) or "no names"
        # grpc-errors.md rule 3: the SNI matched none of this server's certificates; the client's
        # hostname check (against the same name) will most likely fail. A hint, not proof.
        return (
            f"a client asked for {asked} (TLS SNI), which this certificate does not cover ({have}); its hostname "
            f"check will most likely fail — it should dial one of those names or set --server-name, or reissue "
            f"this certificate with --dns {asked} (grpc: No match found for server name: {asked})"
        )
    return None


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
