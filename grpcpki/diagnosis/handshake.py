"""The probe's sockets: one TCP connection and TLS handshake at a time, with what was observed.

Each :func:`tls_attempt` is a fresh ``ssl`` client (ALPN ``h2``, no verification: the chain is
checked afterwards with the doctor, to say precisely what is wrong). Handshake messages are
observed through ``SSLContext._msg_callback`` (CPython-private, present since 3.8): it gives the
CertificateRequest and the full Certificate message even when the handshake then fails. Without
it, the chain falls back to ``get_unverified_chain()`` (public in 3.13) and then to the leaf alone.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field

from grpcpki.diagnosis.wire import EMPTY_SETTINGS, HTTP2_PREFACE, Trace, alert_from_reason, is_settings

__all__ = ["Attempt", "MaterialError", "plaintext_h2", "tls_attempt"]


class MaterialError(Exception):
    """The client certificate/key could not be loaded (no connection was made)."""


@dataclass
class Attempt:
    """One TCP connection + TLS handshake + a read after it."""

    handshake_ok: bool = False
    version: str | None = None
    alpn: str | None = None
    cipher: str | None = None
    der_chain: list[bytes] = field(default_factory=list)
    chain_complete: bool = False
    error: str | None = None  # OpenSSL reason (e.g. WRONG_VERSION_NUMBER) or a short description
    alert: str | None = None  # TLS alert name received from the server (e.g. unknown_ca)
    after: str | None = None  # after the handshake: settings | data | closed | silent
    trace: Trace = field(default_factory=Trace)



def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def _read_after_handshake(tls: ssl.SSLSocket, timeout: float) -> tuple[str, bytes]:
    """settings | data | closed | silent, after one quiet read and one read after the preface."""
    for send_preface, wait in ((False, min(timeout, 0.25)), (True, min(timeout, 1.0))):
        try:
            if send_preface:
                tls.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
            tls.settimeout(wait)
            data = tls.recv(4096)
        except TimeoutError:
            continue
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionError):
            return "closed", b""
        if not data:
            return "closed", b""
        return ("settings" if is_settings(data) else "data"), data
    return "silent", b""



def tls_attempt(
    host: str,
    port: int,
    sni: str | None,
    timeout: float,
    certfile: str | None = None,
    keyfile: str | None = None,
    password: bytes | None = None,
) -> Attempt:
    attempt = Attempt()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Verification is done afterwards with cryptography, to say precisely what is wrong.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, password=password)
        except (ssl.SSLError, OSError) as exc:
            raise MaterialError(getattr(exc, "reason", None) or exc.strerror or str(exc)) from exc
    if hasattr(context, "_msg_callback"):
        context._msg_callback = attempt.trace.callback
        attempt.trace.supported = True
    raw = _connect(host, port, timeout)
    tls = context.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False)
    try:
        tls.settimeout(timeout)
        try:
            tls.do_handshake()
        except ssl.SSLError as exc:
            attempt.error = exc.reason or type(exc).__name__
            attempt.alert = (attempt.trace.alerts[-1] if attempt.trace.alerts else None) or alert_from_reason(exc.reason)
            attempt.der_chain = list(attempt.trace.server_certs)
            attempt.chain_complete = bool(attempt.der_chain)
            return attempt
        except TimeoutError:
            attempt.error = "timeout"
            return attempt
        except ConnectionError as exc:
            attempt.error = f"closed ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})"
            return attempt
        attempt.handshake_ok = True
        attempt.version = tls.version()
        attempt.alpn = tls.selected_alpn_protocol()
        cipher = tls.cipher()
        attempt.cipher = cipher[0] if cipher else None
        attempt.der_chain, attempt.chain_complete = _presented_chain(tls, attempt.trace)
        try:
            attempt.after, _ = _read_after_handshake(tls, timeout)
        except ssl.SSLError as exc:
            attempt.after = "closed"
            attempt.error = exc.reason or type(exc).__name__
            attempt.alert = alert_from_reason(exc.reason) or (attempt.trace.alerts[-1] if attempt.trace.alerts else None)
        if attempt.after == "closed" and attempt.alert is None and attempt.trace.alerts:
            attempt.alert = attempt.trace.alerts[-1]
        return attempt
    finally:
        tls.close()


def _presented_chain(tls: ssl.SSLSocket, trace: Trace) -> tuple[list[bytes], bool]:
    if trace.server_certs:
        return list(trace.server_certs), True
    getter = getattr(tls, "get_unverified_chain", None) or getattr(tls._sslobj, "get_unverified_chain", None)  # type: ignore[attr-defined]
    if getter is not None:
        certs = getter() or []
        ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]
        if ders:
            return ders, True
    leaf = tls.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


def plaintext_h2(host: str, port: int, timeout: float) -> str:
    """h2c | http1 | other | closed: what the port says to a plaintext HTTP/2 preface."""
    try:
        with _connect(host, port, timeout) as raw:
            raw.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
            raw.settimeout(min(timeout, 2.0))
            data = raw.recv(4096)
    except (TimeoutError, OSError):
        return "closed"
    if is_settings(data):
        return "h2c"
    if data.startswith(b"HTTP/"):
        return "http1"
    return "other" if data else "closed"


