"""A live TLS probe of a gRPC endpoint, with the standard library's ``ssl`` and ``socket`` only.

gRPC's own errors rarely say which side refused what (grpc-errors.md: b, c, i, k and m all read
"Socket closed"). The probe talks TLS to the port itself and reports what the server does:

1. TCP connect: refused ("nothing listening"), timed out, unreachable.
2. An anonymous handshake (no client certificate, no verification, ALPN ``h2``, SNI as gRPC sends
   it: the dialed name unless it is an IP address). From it: TLS version, ALPN, the presented chain,
   and whether the server sends a CertificateRequest.
3. Right after the handshake it reads once (briefly), then sends the HTTP/2 client preface and an
   empty SETTINGS frame and reads again. Under TLS 1.3 the client's handshake completes before the
   server has looked at the client's (absent) certificate, so a rejection only arrives as an alert on
   that read (``certificate_required``); a gRPC server that accepts answers with its SETTINGS frame.
4. If the port does not speak TLS (``WRONG_VERSION_NUMBER``, grpc-errors.md l), a plaintext HTTP/2
   preface is sent on a new connection: a SETTINGS frame back means h2c (an insecure gRPC port).
5. With client material, a mutual handshake; the server's alert says which check failed
   (``unknown_ca``, ``certificate_expired``, ``unsupported_certificate``...).

The presented chain is checked with :mod:`grpcpki.engine.doctor` (against ``ca_pem`` when given),
so a name mismatch names the names compared.

Limits:

* Handshake messages are observed through ``SSLContext._msg_callback`` (CPython-private, present
  since 3.8). It gives the CertificateRequest and the full Certificate message, even when the
  handshake then fails. Without it, the chain falls back to ``get_unverified_chain()`` (public in
  3.13, private on ``_sslobj`` before) and then to the leaf alone; "requested" becomes unknown.
* A server that closes the connection without sending an alert (or whose alert is lost to a TCP
  reset) is reported from what was seen: a CertificateRequest followed by a close is read as
  "requires a client certificate".
* gRPC C-core servers reject a client certificate by closing the connection without an alert
  (grpc-errors.md c, i, k: "Socket closed") and list no acceptable CAs in their CertificateRequest,
  so against them the probe reports ``client-cert-rejected`` and adds the local reasons it can see
  (doctor findings on the client material; a client certificate that does not chain to ``ca_pem``).
  Servers that list their client CAs (Go, nginx, Envoy) get ``client-cert-rejected-unknown-ca``
  with both sides named.
* It does not send a gRPC request: "accepted" means the TLS session and HTTP/2 preface were.

Finding ids (certificate problems of the presented chain reuse the doctor's ids, e.g.
``name-mismatch``, ``expired``, ``chain-untrusted``, ``missing-intermediate``, ``wrong-eku``):

================================  ========  ==================================================
id                                severity  meaning
================================  ========  ==================================================
connection-refused                error     nothing is listening on host:port
connect-timeout                   error     no TCP answer within the timeout
connect-failed                    error     the address cannot be reached or resolved
handshake-timeout                 error     TCP connected, but no TLS answer within the timeout
plaintext-server                  error     the port speaks plaintext HTTP/2 (h2c), not TLS
not-tls                           error     the port answers, but not with TLS
tls-handshake-failed              error     the server aborted the handshake (alert given)
no-alpn-h2                        error     the server did not select ALPN "h2"
server-requires-client-cert       info      mTLS: the server refuses clients without a certificate
server-requests-client-cert       info      the server asks for a client certificate but accepts none
client-cert-unused                info      client material given, but the server never asked for it
client-cert-rejected-unknown-ca   error     the server does not trust the client certificate's CA
client-cert-rejected-expired      error     the server says the client certificate is expired
client-cert-rejected-purpose      error     the server says the client certificate's EKU lacks clientAuth
client-cert-rejected              error     the server rejected the client certificate (other alert)
client-material-unusable          error     the client certificate/key cannot be loaded locally
================================  ========  ==================================================
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grpcpki.engine import doctor
from grpcpki.engine.doctor import Finding, Severity
from grpcpki.engine.errors import ProbeError
from grpcpki.engine.names import is_ip

if TYPE_CHECKING:
    from cryptography import x509

    from grpcpki.engine.certs import CertInfo

__all__ = ["PROBE_FINDINGS", "ProbeResult", "probe"]

PROBE_FINDINGS: dict[str, str] = {
    "connection-refused": "nothing is listening on host:port",
    "connect-timeout": "no TCP answer within the timeout",
    "connect-failed": "the address cannot be reached or resolved",
    "handshake-timeout": "TCP connected, but no TLS answer within the timeout",
    "plaintext-server": "the port speaks plaintext HTTP/2 (h2c), not TLS",
    "not-tls": "the port answers, but not with TLS",
    "tls-handshake-failed": "the server aborted the handshake",
    "no-alpn-h2": "the server did not select ALPN h2",
    "server-requires-client-cert": "the server requires a client certificate",
    "server-requests-client-cert": "the server asks for, but does not require, a client certificate",
    "client-cert-unused": "the server never asked for the client certificate",
    "client-cert-rejected-unknown-ca": "the server does not trust the client certificate's CA",
    "client-cert-rejected-expired": "the server says the client certificate is expired",
    "client-cert-rejected-purpose": "the server says the client certificate's EKU is wrong",
    "client-cert-rejected": "the server rejected the client certificate",
    "client-material-unusable": "the client certificate/key cannot be loaded",
}

# RFC 7540 §3.5 client connection preface, then an empty SETTINGS frame (§6.5: length 0, type 4,
# flags 0, stream 0) so that an HTTP/2 server answers with its own SETTINGS.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x04

# TLS alert descriptions (RFC 8446 §6.2) as seen in the msg callback.
_ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    109: "missing_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
_HANDSHAKE, _ALERT = 22, 21
_CERTIFICATE, _CERTIFICATE_REQUEST = 11, 13
# OpenSSL reasons that mean "the bytes that came back are not TLS".
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_TOO_LONG",
        "TLSV1_ALERT_PROTOCOL_VERSION",
    }
)


@dataclass(frozen=True)
class ProbeResult:
    """What a TLS client sees at ``host:port``. ``None`` means "could not tell"."""

    host: str
    port: int
    server_name: str  # the name checked against the certificate (server_name or host)
    sni: str | None  # what was sent as SNI (none for IP addresses, like gRPC)
    tcp_connected: bool
    tls: bool  # an anonymous TLS handshake completed (or failed only for want of a client cert)
    tls_version: str | None = None
    alpn: str | None = None
    cipher: str | None = None
    chain_pem: bytes = b""  # as presented, leaf first
    chain: tuple[CertInfo, ...] = ()
    chain_complete: bool = False  # False when only the leaf could be read
    client_cert_requested: bool | None = None
    client_cert_required: bool | None = None
    verified: bool | None = None  # chain verifies against ca_pem for server_name; None without ca_pem
    verify_detail: str | None = None
    mutual_ok: bool | None = None  # None when no client material was given
    http2: bool | None = None  # the server answered the HTTP/2 preface with SETTINGS
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not doctor.has_errors(self.findings)

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "server_name": self.server_name,
            "sni": self.sni,
            "tcp_connected": self.tcp_connected,
            "tls": self.tls,
            "tls_version": self.tls_version,
            "alpn": self.alpn,
            "cipher": self.cipher,
            "chain": [info.to_dict() for info in self.chain],
            "chain_complete": self.chain_complete,
            "client_cert_requested": self.client_cert_requested,
            "client_cert_required": self.client_cert_required,
            "verified": self.verified,
            "verify_detail": self.verify_detail,
            "mutual_ok": self.mutual_ok,
            "http2": self.http2,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Trace:
    """Handshake messages seen by the msg callback."""

    supported: bool = False
    cert_request: bool = False
    acceptable_cas: list[bytes] = field(default_factory=list)  # DER Names from the CertificateRequest
    server_certs: list[bytes] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def callback(
        self, _conn: object, direction: str, version: int, content_type: int, msg_type: int, data: bytes
    ) -> None:
        if direction != "read":
            return
        if content_type == _HANDSHAKE and msg_type == _CERTIFICATE_REQUEST:
            self.cert_request = True
            self.acceptable_cas = _parse_certificate_authorities(data, tls13=version == ssl.TLSVersion.TLSv1_3)
        elif content_type == _HANDSHAKE and msg_type == _CERTIFICATE and not self.server_certs:
            self.server_certs = _parse_certificate_message(data, tls13=version == ssl.TLSVersion.TLSv1_3)
        elif content_type == _ALERT and len(data) == 2:
            self.alerts.append(_ALERTS.get(data[1], f"alert {data[1]}"))


def _parse_certificate_message(data: bytes, *, tls13: bool) -> list[bytes]:
    """DER certificates of a Certificate handshake message (RFC 5246 §7.4.2, RFC 8446 §4.4.2)."""
    try:
        pos = 4  # msg_type(1) + length(3)
        if tls13:
            pos += 1 + data[pos]  # certificate_request_context
        end = pos + 3 + int.from_bytes(data[pos : pos + 3], "big")
        pos += 3
        certs: list[bytes] = []
        while pos < end:
            size = int.from_bytes(data[pos : pos + 3], "big")
            certs.append(data[pos + 3 : pos + 3 + size])
            pos += 3 + size
            if tls13:
                pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # CertificateEntry extensions
        return certs
    except IndexError:
        return []


class _MaterialError(Exception):
    """The client certificate/key could not be loaded (no connection was made)."""


def _parse_certificate_authorities(data: bytes, *, tls13: bool) -> list[bytes]:
    """DER DistinguishedNames a CertificateRequest lists as acceptable issuers (may be empty).

    TLS 1.2 (RFC 5246 §7.4.4): certificate_types, signature_algorithms, certificate_authorities.
    TLS 1.3 (RFC 8446 §4.3.2, §4.2.4): context, then extensions; certificate_authorities is type 47.
    BoringSSL servers (gRPC C-core) fill it from their client-CA roots; Python's ssl servers do not.
    """
    try:
        pos = 4
        if tls13:
            pos += 1 + data[pos]
            end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            while pos < end:
                kind, size = int.from_bytes(data[pos : pos + 2], "big"), int.from_bytes(data[pos + 2 : pos + 4], "big")
                if kind == 47:
                    return _names(data[pos + 4 : pos + 4 + size])
                pos += 4 + size
            return []
        pos += 1 + data[pos]
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
        return _names(data[pos:])
    except IndexError:
        return []


def _names(block: bytes) -> list[bytes]:
    end = 2 + int.from_bytes(block[:2], "big")
    pos, names = 2, []
    while pos < end:
        size = int.from_bytes(block[pos : pos + 2], "big")
        names.append(block[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return names


@dataclass
class _Attempt:
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
    trace: _Trace = field(default_factory=_Trace)


def _alert_from_reason(reason: str | None) -> str | None:
    # "TLSV13_ALERT_CERTIFICATE_REQUIRED" -> "certificate_required"
    if reason and "_ALERT_" in reason:
        return reason.split("_ALERT_", 1)[1].lower()
    return None


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
        return ("settings" if _is_settings(data) else "data"), data
    return "silent", b""


def _is_settings(data: bytes) -> bool:
    # RFC 7540 §4.1 frame header: length(3) type(1) flags(1) stream(4); SETTINGS is on stream 0.
    return len(data) >= 9 and data[3] == _SETTINGS and data[5:9] == b"\x00\x00\x00\x00"


def _tls_attempt(
    host: str,
    port: int,
    sni: str | None,
    timeout: float,
    certfile: str | None = None,
    keyfile: str | None = None,
    password: bytes | None = None,
) -> _Attempt:
    attempt = _Attempt()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Verification is done afterwards with cryptography, to say precisely what is wrong.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, password=password)
        except (ssl.SSLError, OSError) as exc:
            raise _MaterialError(getattr(exc, "reason", None) or exc.strerror or str(exc)) from exc
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
            attempt.alert = (attempt.trace.alerts[-1] if attempt.trace.alerts else None) or _alert_from_reason(exc.reason)
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
            attempt.alert = _alert_from_reason(exc.reason) or (attempt.trace.alerts[-1] if attempt.trace.alerts else None)
        if attempt.after == "closed" and attempt.alert is None and attempt.trace.alerts:
            attempt.alert = attempt.trace.alerts[-1]
        return attempt
    finally:
        tls.close()


def _presented_chain(tls: ssl.SSLSocket, trace: _Trace) -> tuple[list[bytes], bool]:
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


def _plaintext_h2(host: str, port: int, timeout: float) -> str:
    """h2c | http1 | other | closed: what the port says to a plaintext HTTP/2 preface."""
    try:
        with _connect(host, port, timeout) as raw:
            raw.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
            raw.settimeout(min(timeout, 2.0))
            data = raw.recv(4096)
    except (TimeoutError, OSError):
        return "closed"
    if _is_settings(data):
        return "h2c"
    if data.startswith(b"HTTP/"):
        return "http1"
    return "other" if data else "closed"


def probe(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    ca_pem: bytes | None = None,
    client_cert_path: str | os.PathLike[str] | None = None,
    client_key_path: str | os.PathLike[str] | None = None,
    client_key_passphrase: bytes | None = None,
    timeout: float = 5.0,
    known_cas: Sequence[bytes] = (),
) -> ProbeResult:
    """Handshake with ``host:port`` and report what a gRPC client would run into.

    ``server_name`` is the name the client checks the certificate against (gRPC's
    ``grpc.ssl_target_name_override``; it is also sent as SNI); default ``host``. ``ca_pem`` is
    the bundle the client trusts. ``client_cert_path``/``client_key_path`` make a mutual
    handshake. ``known_cas`` (PEM of the PKI's intermediate CAs) lets a chain that omits one be
    reported as ``missing-intermediate`` rather than ``chain-untrusted``. Only ``host`` is ever contacted. Raises :class:`ProbeError` for bad arguments only;
    network failures are findings.
    """
    if not host:
        raise ProbeError("no host to probe", "give a host name or IP address")
    if not 0 < port < 65536:
        raise ProbeError(f"port {port} is out of range", "use a port between 1 and 65535")
    if (client_cert_path is None) != (client_key_path is None):
        raise ProbeError("a client certificate needs its key (and a key its certificate)", "give both --cert and --key")
    host = host.strip("[]")
    name = server_name or host
    # gRPC sends no SNI for IP targets (grpc-errors.md f2/q1: "no SNI => no server line").
    sni = None if is_ip(name) else name
    where = f"{host}:{port}"
    def unreachable(finding_id: str, message: str, fix: str) -> ProbeResult:
        finding = Finding(finding_id, Severity.ERROR, message, fix, where)
        return ProbeResult(host, port, name, sni, tcp_connected=False, tls=False, findings=(finding,))

    try:
        first = _tls_attempt(host, port, sni, timeout)
    except ConnectionRefusedError:
        return unreachable(
            "connection-refused",
            f"nothing is listening on {where} (connection refused).",
            "start the server, or check the host and port",
        )
    except TimeoutError:
        return unreachable(
            "connect-timeout",
            f"{where} did not answer a TCP connection within {timeout:g} s.",
            "check the address and any firewall between here and there",
        )
    except OSError as exc:
        reason = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else None) or str(exc)
        return unreachable(
            "connect-failed", f"cannot connect to {where}: {reason}.", "check the host name and the network"
        )

    findings: list[Finding] = []
    requested: bool | None = first.trace.cert_request if first.trace.supported else None
    required: bool | None = None
    tls_ok = first.handshake_ok

    if not first.handshake_ok:
        not_tls = (
            first.error in _NOT_TLS_REASONS or (first.error or "").startswith("closed") or first.error == "SSLEOFError"
        )
        if first.alert == "certificate_required" or (first.alert == "handshake_failure" and first.trace.cert_request):
            # TLS 1.2: the server checks the client certificate inside the handshake.
            required, tls_ok = True, True
        elif first.alert == "no_application_protocol":
            findings.append(
                Finding(
                    "no-alpn-h2",
                    Severity.ERROR,
                    f"{where} refused ALPN h2, so it cannot carry gRPC.",
                    "enable HTTP/2 (ALPN h2) on the server or proxy",
                    where,
                )
            )
        elif not_tls or first.error == "timeout":
            findings.append(_not_tls_finding(host, port, timeout, where, first.error))
        else:
            findings.append(
                Finding(
                    "tls-handshake-failed",
                    Severity.ERROR,
                    f"the TLS handshake with {where} failed: {first.alert or first.error}.",
                    None,
                    where,
                )
            )
    elif first.after == "closed" and (first.alert == "certificate_required" or first.trace.cert_request):
        # TLS 1.3: the rejection comes after the client's Finished (grpc-errors.md b: "Socket closed").
        required = True
    elif first.handshake_ok:
        required = False

    if first.version and first.alpn != "h2" and first.handshake_ok:
        # gRPC over TLS is HTTP/2 negotiated by ALPN; grpc-go >= 1.67 refuses a server without it.
        findings.append(
            Finding(
                "no-alpn-h2",
                Severity.ERROR,
                f"{where} did not select ALPN h2 (got {first.alpn or 'none'}); gRPC clients need it.",
                "enable HTTP/2 (ALPN h2) on the server or proxy",
                where,
            )
        )
    if required:
        findings.append(
            Finding(
                "server-requires-client-cert",
                Severity.INFO,
                f"{where} requires a client certificate (mTLS); a client without one is refused.",
                None,
                where,
            )
        )
    elif requested and required is False:
        findings.append(
            Finding(
                "server-requests-client-cert",
                Severity.INFO,
                f"{where} asks for a client certificate but also accepts clients without one.",
                None,
                where,
            )
        )

    chain_infos, chain_pem, verified, detail = _check_chain(first, name, ca_pem, where, findings, known_cas)

    mutual_ok: bool | None = None
    if client_cert_path is not None and client_key_path is not None and tls_ok:
        mutual_ok = _mutual(
            host,
            port,
            sni,
            timeout,
            os.fspath(client_cert_path),
            os.fspath(client_key_path),
            client_key_passphrase,
            requested,
            ca_pem,
            where,
            findings,
        )

    return ProbeResult(
        host=host,
        port=port,
        server_name=name,
        sni=sni,
        tcp_connected=True,
        tls=tls_ok,
        tls_version=first.version,
        alpn=first.alpn,
        cipher=first.cipher,
        chain_pem=chain_pem,
        chain=chain_infos,
        chain_complete=first.chain_complete,
        client_cert_requested=requested,
        client_cert_required=required,
        verified=verified,
        verify_detail=detail,
        mutual_ok=mutual_ok,
        http2=(first.after == "settings") if first.handshake_ok and first.after != "closed" else None,
        findings=tuple(findings),
    )


def _not_tls_finding(host: str, port: int, timeout: float, where: str, error: str | None) -> Finding:
    kind = _plaintext_h2(host, port, timeout)
    if kind == "h2c":
        # grpc-errors.md l: the client sees WRONG_VERSION_NUMBER.
        return Finding(
            "plaintext-server",
            Severity.ERROR,
            f"{where} speaks plaintext HTTP/2 (h2c), not TLS: it is an insecure gRPC port.",
            "serve with TLS (add_secure_port) or dial it with insecure credentials",
            where,
        )
    if error == "timeout":
        return Finding(
            "handshake-timeout",
            Severity.ERROR,
            f"{where} accepted TCP but sent no TLS answer within {timeout:g} s.",
            "check that this port serves TLS",
            where,
        )
    what = "plaintext HTTP/1" if kind == "http1" else "something other than TLS"
    return Finding(
        "not-tls", Severity.ERROR, f"{where} speaks {what} ({error}).", "check the port: it does not serve TLS", where
    )


def _check_chain(
    attempt: _Attempt,
    name: str,
    ca_pem: bytes | None,
    where: str,
    findings: list[Finding],
    known_cas: Sequence[bytes] = (),
) -> tuple[tuple[CertInfo, ...], bytes, bool | None, str | None]:
    if not attempt.der_chain:
        return (), b"", None, None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from grpcpki.engine.certs import cert_info
    from grpcpki.engine.verify import verify_chain

    pems = [x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM) for der in attempt.der_chain]
    chain_pem = b"".join(pems)
    infos = tuple(cert_info(pem) for pem in pems)
    subject = f"server chain at {where}"
    relabel = {"the certificate chain": subject, "the trust bundle": "the CA bundle (--ca)"}
    for f in doctor.check_material(
        chain_pem, role="server", trust=ca_pem, host=name, name=infos[0].common_name or None, known_cas=known_cas
    ):
        message = f.message
        for old, new in relabel.items():
            message = message.replace(old, new)
        findings.append(dataclasses.replace(f, message=message, subject=relabel.get(f.subject or "", f.subject)))
    if ca_pem is None:
        return infos, chain_pem, None, None
    check = verify_chain(chain_pem, ca_pem, "server", host=name)
    return infos, chain_pem, check.ok, doctor._verifier_reason(check.detail)


def _issuer_not_listed(certfile: str, acceptable: list[bytes]) -> tuple[str, str] | None:
    """(our issuers, acceptable CAs) as text when none of our chain's issuers is acceptable."""
    from cryptography import x509

    try:
        with open(certfile, "rb") as handle:
            chain = x509.load_pem_x509_certificates(handle.read())
    except (OSError, ValueError):
        return None
    ours = [c.issuer for c in chain] + [c.subject for c in chain[1:]]
    if any(name.public_bytes() in acceptable for name in ours):
        return None
    accepted = ", ".join(_name_text(der) for der in acceptable)
    return ", ".join(dict.fromkeys(n.rfc4514_string() for n in ours)), accepted


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) TLVs of a DER byte string, one level deep."""
    items, pos = [], 0
    while pos < len(data):
        tag, size, pos = data[pos], data[pos + 1], pos + 2
        if size & 0x80:
            count = size & 0x7F
            size, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
        items.append((tag, data[pos : pos + size]))
        pos += size
    return items


def _name_text(der: bytes) -> str:
    """RFC 4514 text of a DER Name (cryptography has no public DER Name loader)."""
    from cryptography import x509

    try:
        ((_, rdns),) = _der_items(der)
        attributes = []
        for _, rdn in _der_items(rdns):
            for _, pair in _der_items(rdn):
                (_, oid), (_, value) = _der_items(pair)
                attributes.append(x509.NameAttribute(_decode_oid(oid), value.decode("utf-8", "replace")))
        return x509.Name(attributes).rfc4514_string()
    except (ValueError, IndexError):
        return der.hex()


def _decode_oid(body: bytes) -> x509.ObjectIdentifier:
    from cryptography.x509 import ObjectIdentifier

    parts, value = [body[0] // 40, body[0] % 40], 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ObjectIdentifier(".".join(map(str, parts)))


# Alerts the server sends when it rejects the client certificate (BoringSSL/OpenSSL verify
# result -> alert: ssl_verify_alarm_type), grpc-errors.md c, i, k.
_CLIENT_ALERTS: dict[str, tuple[str, str, str]] = {
    "unknown_ca": (
        "client-cert-rejected-unknown-ca",
        "does not trust the CA that issued the client certificate",
        "issue the client certificate from the CA the server trusts, or add its CA to the server's client-CA bundle",
    ),
    "certificate_expired": (
        "client-cert-rejected-expired",
        "says the client certificate is expired (or not yet valid)",
        "renew the client certificate: grpcpki renew NAME",
    ),
    "unsupported_certificate": (
        "client-cert-rejected-purpose",
        "says the client certificate cannot be used for client authentication (EKU lacks clientAuth)",
        "issue a client certificate: grpcpki issue client NAME",
    ),
}


def _mutual(
    host: str,
    port: int,
    sni: str | None,
    timeout: float,
    certfile: str,
    keyfile: str,
    password: bytes | None,
    requested: bool | None,
    ca_pem: bytes | None,
    where: str,
    findings: list[Finding],
) -> bool:
    local = [
        f
        for f in doctor.check_material(certfile, keyfile, role="client", passphrase=password)
        if f.severity is not Severity.INFO
    ]
    findings += local
    try:
        attempt = _tls_attempt(host, port, sni, timeout, certfile, keyfile, password)
    except _MaterialError as exc:
        # load_cert_chain: KEY_VALUES_MISMATCH, bad PEM... (grpc-errors.md n2: "Failed to create security handshaker").
        if not doctor.has_errors(local):
            findings.append(
                Finding(
                    "client-material-unusable",
                    Severity.ERROR,
                    f"the client certificate/key cannot be loaded: {exc}.",
                    None,
                    certfile,
                )
            )
        return False
    except OSError as exc:
        findings.append(
            Finding(
                "connect-failed", Severity.ERROR, f"cannot reconnect to {where}: {exc.strerror or exc}.", None, where
            )
        )
        return False
    if attempt.handshake_ok and attempt.after != "closed":
        if requested is False:
            findings.append(
                Finding(
                    "client-cert-unused",
                    Severity.INFO,
                    f"{where} never asked for a client certificate, so the one given was not sent.",
                    None,
                    where,
                )
            )
        return True
    alert = attempt.alert
    if alert is None and attempt.trace.acceptable_cas:
        # The server hung up without an alert (gRPC C-core does: grpc-errors.md c, "Socket closed"),
        # but its CertificateRequest named the CAs it accepts.
        unknown = _issuer_not_listed(certfile, attempt.trace.acceptable_cas)
        if unknown is not None:
            alert = "unknown_ca"
            findings.append(
                Finding(
                    "client-cert-rejected-unknown-ca",
                    Severity.ERROR,
                    f"{where} closed the connection; it accepts client certificates from {unknown[1]}, "
                    f"but this one chains to {unknown[0]}.",
                    _CLIENT_ALERTS["unknown_ca"][2],
                    certfile,
                )
            )
            return False
    if alert in _CLIENT_ALERTS:
        fid, text, fix = _CLIENT_ALERTS[alert]
        findings.append(Finding(fid, Severity.ERROR, f"{where} {text} (TLS alert {alert}).", fix, certfile))
    elif alert == "certificate_required":
        findings.append(
            Finding(
                "client-cert-rejected",
                Severity.ERROR,
                f"{where} says no client certificate arrived although one was configured (TLS alert {alert}).",
                None,
                certfile,
            )
        )
    else:
        why = (
            f"TLS alert {alert}"
            if alert
            else ("it closed the connection right after the handshake" if attempt.handshake_ok else attempt.error)
        )
        likely = ""
        if (
            not local
            and ca_pem is not None
            and any(f.id == "chain-untrusted" for f in doctor.check_trust_bundle(ca_pem, peer=certfile, role="client"))
        ):
            # One-CA PKIs trust the same CA both ways; a client certificate from elsewhere is the usual cause (c).
            likely = "; the client certificate does not chain to the CA given with the probe, so its issuer is the likely cause"
        findings.append(
            Finding(
                "client-cert-rejected",
                Severity.ERROR,
                f"{where} rejected the client certificate ({why}){likely}.",
                "check the server's log for the verification error",
                certfile,
            )
        )
    return False
