"""A live TLS probe of a gRPC endpoint: what the server does, in the policy that reads it.

gRPC's own errors rarely say which side refused what (docs/failures.md: a missing, untrusted,
expired or wrong-usage client certificate and a plaintext client all read "Socket closed"). The
probe talks TLS to the port itself (:mod:`.handshake`, :mod:`.wire`) and decides here:

1. TCP connect: refused ("nothing listening"), timed out, unreachable.
2. An anonymous handshake (no client certificate, no verification, ALPN ``h2``, SNI as gRPC sends
   it: the dialed name unless it is an IP address). From it: TLS version, ALPN, the presented chain,
   and whether the server sends a CertificateRequest.
3. Right after the handshake it reads once (briefly), then sends the HTTP/2 client preface and an
   empty SETTINGS frame and reads again. Under TLS 1.3 the client's handshake completes before the
   server has looked at the client's (absent) certificate, so a rejection only arrives as an alert on
   that read (``certificate_required``); a gRPC server that accepts answers with its SETTINGS frame.
4. If the port does not speak TLS (an OpenSSL reason in :data:`.catalogue.NOT_TLS_REASONS`), a
   plaintext HTTP/2 preface is sent on a new connection: SETTINGS back means h2c (an insecure port).
5. With client material, a mutual handshake; the server's alert says which check failed, read
   through the catalogue (``unknown_ca``, ``certificate_expired``, ``unsupported_certificate``...).

The presented chain is checked with :mod:`.doctor` (against ``ca_pem`` when given), so a name
mismatch names the names compared. Finding ids are :data:`PROBE_FINDINGS` plus the doctor's.

Limits:

* A server that closes the connection without sending an alert (or whose alert is lost to a TCP
  reset) is reported from what was seen: a CertificateRequest followed by a close is read as
  "requires a client certificate".
* gRPC C-core servers reject a client certificate by closing the connection without an alert
  and list no acceptable CAs in their CertificateRequest (docs/failures.md#server-rejected-client),
  so against them the probe reports ``client-cert-rejected`` and adds the local reasons it can see
  (doctor findings on the client material; a client certificate that does not chain to ``ca_pem``).
  Servers that list their client CAs (Go, nginx, Envoy) get ``client-cert-rejected-unknown-ca``
  with both sides named.
* It does not send a gRPC request: "accepted" means the TLS session and HTTP/2 preface were.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpcpki.diagnosis import catalogue, doctor
from grpcpki.diagnosis.chain import verifier_reason
from grpcpki.diagnosis.findings import FINDINGS, Finding, Severity, has_errors
from grpcpki.diagnosis.handshake import Attempt, MaterialError, plaintext_h2, tls_attempt
from grpcpki.diagnosis.wire import name_text
from grpcpki.engine.errors import GrpcpkiError, ProbeError
from grpcpki.engine.names import is_ip
from grpcpki.engine.storage import read_file

if TYPE_CHECKING:
    from grpcpki.engine.certs import CertInfo

__all__ = ["PROBE_FINDINGS", "ProbeResult", "probe"]

# The probe's own finding ids (certificate problems of the presented chain reuse the doctor's).
PROBE_FINDINGS: dict[str, str] = {
    key: FINDINGS[key]
    for key in (
        "connection-refused", "connect-timeout", "connect-failed", "handshake-timeout", "plaintext-server",
        "not-tls", "tls-handshake-failed", "no-alpn-h2", "server-requires-client-cert",
        "server-requests-client-cert", "client-cert-unused", "client-cert-rejected-unknown-ca",
        "client-cert-rejected-expired", "client-cert-rejected-purpose", "client-cert-rejected",
        "client-material-unusable",
    )
}
_NOT_TLS_REASONS = frozenset(catalogue.NOT_TLS_REASONS)


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
        return not has_errors(self.findings)

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
    owners: Mapping[str, str] | None = None,
) -> ProbeResult:
    """Handshake with ``host:port`` and report what a gRPC client would run into.

    ``server_name`` is the name the client checks the certificate against (gRPC's
    ``grpc.ssl_target_name_override``; it is also sent as SNI); default ``host``. ``ca_pem`` is
    the bundle the client trusts. ``client_cert_path``/``client_key_path`` make a mutual
    handshake. ``known_cas`` (PEM of the PKI's intermediate CAs) lets a chain that omits one be
    reported as ``missing-intermediate`` rather than ``chain-untrusted``. ``owners`` (serial ->
    inventory name, :func:`.store.owners`) says which presented certificate is the PKI's own, so a
    fix may reissue it in place. Only ``host`` is ever contacted. Raises :class:`ProbeError` for bad arguments only;
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
    # gRPC sends no SNI for IP targets (docs/failures.md#hostname-mismatch).
    sni = None if is_ip(name) else name
    where = f"{host}:{port}"
    def unreachable(finding_id: str, message: str, fix: str) -> ProbeResult:
        finding = Finding(finding_id, Severity.ERROR, message, fix, where)
        return ProbeResult(host, port, name, sni, tcp_connected=False, tls=False, findings=(finding,))

    try:
        first = tls_attempt(host, port, sni, timeout)
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
        # TLS 1.3: the rejection comes after the client's Finished (docs/failures.md#client-cert-missing).
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

    chain_infos, chain_pem, verified, detail = _check_chain(first, name, ca_pem, where, findings, known_cas, owners or {})

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
    kind = plaintext_h2(host, port, timeout)
    if kind == "h2c":
        # grpcio reads this as WRONG_VERSION_NUMBER (docs/failures.md#server-not-tls).
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
    attempt: Attempt,
    name: str,
    ca_pem: bytes | None,
    where: str,
    findings: list[Finding],
    known_cas: Sequence[bytes] = (),
    owners: Mapping[str, str] | None = None,
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
    owned = (owners or {}).get(infos[0].serial_hex)
    for f in doctor.check_material(
        chain_pem, role="server", trust=ca_pem, host=name, known_cas=known_cas,
        name=owned or infos[0].common_name or None, managed=owned is not None,
    ):
        message = f.message
        for old, new in relabel.items():
            message = message.replace(old, new)
        findings.append(dataclasses.replace(f, message=message, subject=relabel.get(f.subject or "", f.subject)))
    if ca_pem is None:
        return infos, chain_pem, None, None
    check = verify_chain(chain_pem, ca_pem, "server", host=name)
    return infos, chain_pem, check.ok, verifier_reason(check.detail)


def _issuer_not_listed(certfile: str, acceptable: list[bytes]) -> tuple[str, str] | None:
    """(our issuers, acceptable CAs) as text when none of our chain's issuers is acceptable."""
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(read_file(certfile, "certificate"))
    except (GrpcpkiError, ValueError):
        return None
    ours = [c.issuer for c in chain] + [c.subject for c in chain[1:]]
    if any(name.public_bytes() in acceptable for name in ours):
        return None
    accepted = ", ".join(name_text(der) for der in acceptable)
    return ", ".join(dict.fromkeys(n.rfc4514_string() for n in ours)), accepted



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
        attempt = tls_attempt(host, port, sni, timeout, certfile, keyfile, password)
    except MaterialError as exc:
        # load_cert_chain: KEY_VALUES_MISMATCH, bad PEM... (docs/failures.md#local-credentials-unusable).
        if not has_errors(local):
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
        # The server hung up without an alert (gRPC C-core does: docs/failures.md#server-rejected-client),
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
                    catalogue.by_kind("client-cert-untrusted").fix,
                    certfile,
                )
            )
            return False
    refusal = catalogue.match(alert, ["alert"], refused_by="server") if alert else None
    if refusal is not None and refusal.probe is not None and refusal.probe != "client-cert-rejected":
        message = f"{where} refused the client certificate because {refusal.why} (TLS alert {alert})."
        findings.append(Finding(refusal.probe, Severity.ERROR, message, refusal.fix, certfile))
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
