"""Turn a failed gRPC call into plain words: what probably went wrong, and what to do.

:func:`explain` is a pure function of the status code name, the ``details()`` string and a
little context (target, mode, name checked). It imports nothing from grpc, so it can be tested
table-driven and reused by a later live diagnosis (``grpcpki probe``), which may pass what it
learnt about the server (``server_sans``) to sharpen the reading.

The rules follow /work/shared/grpc-errors.md ("How to read a client error"), measured on
grpcio 1.85.3 / BoringSSL. Two facts shape everything here:

* the client only sees ``last error: <tail>`` in ``details()``; ``debug_error_string()`` adds
  nothing (it is ``"<CODE>:" + details()``);
* when the *server* rejects the handshake (no client cert, wrong CA, expired, no clientAuth,
  plaintext client) the client sees only ``Socket closed``: the cause is in the server's log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.names import is_ip

Mode = Literal["mtls", "tls", "plaintext"]
"""How a client dials or a server listens: mutual TLS, server-only TLS, or no TLS at all."""

MODE_WORDS: dict[str, str] = {
    "mtls": "mTLS (client certificate required)",
    "tls": "TLS (server certificate only)",
    "plaintext": "plaintext (no TLS)",
}


class GreeterError(GrpcpkiError):
    """The Greeter cannot start: bad flags, unusable certificate files, port in use."""


@dataclass(frozen=True)
class Diagnosis:
    """A first reading of a failed call.

    ``kind`` is a stable identifier for scripts and tests; ``cause`` and ``fix`` are for people.
    ``certain`` is False when several causes give the same client-side text (then ``cause``
    lists them and ``fix`` says where the deciding evidence is). ``findings`` are the ids of the
    probe/doctor findings a live diagnosis (:mod:`grpcpki.greeter.diagnose`) based it on, and
    ``evidence`` their sentences; both are empty for this first, text-only reading.
    """

    code: str
    kind: str
    cause: str
    fix: str
    certain: bool = True
    findings: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()


_PREFIX = "failed to connect to all addresses; last error: "
_VERIFY_RE = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")
# `grpcpki serve`'s refusal of a revoked client (grpcpki.greeter.crl.Revoked.message).
_REVOKED_RE = re.compile(r"serial ([0-9a-fA-F:]+)\b.*?\bis revoked", re.DOTALL)
_UPDATED_RE = re.compile(r"\((\S+ updated [^)]*)\)")
_REVOKED_FIX = (
    "a revoked certificate stays revoked and cannot be renewed: issue the client a new one "
    "(`grpcpki issue client NAME` with the same --spiffe-id/--dns as before) and use it"
)
_DOCTOR = "run `grpcpki doctor` on the server's files, or `grpcpki probe HOST:PORT` for a live look"

# BoringSSL X509 verify reasons seen in CERTIFICATE_VERIFY_FAILED (grpc-errors.md rows d, g, h, j,
# o3, o4, p) -> (kind, cause, fix). "{trust}" is the client's trust bundle.
_SERVER_CHAIN_REASONS: dict[str, tuple[str, str, str]] = {
    "unable to get local issuer certificate": (
        "server-cert-untrusted",
        "this client could not chain the server's certificate to its trust bundle ({trust}): the server "
        "certificate comes from another CA, or the server does not send its intermediate CA certificate",
        "pass the CA that issued the server certificate with --ca (or its PKI's ca.crt), and make the "
        "server present its full chain (leaf + intermediates: chain.pem rather than cert.pem)",
    ),
    "self signed certificate": (
        "server-cert-self-signed",
        "the server presents a self-signed certificate that is not in this client's trust bundle ({trust})",
        "trust that exact certificate with --ca, or serve a certificate issued by your CA",
    ),
    "self signed certificate in certificate chain": (
        "server-cert-untrusted",
        "the server's chain ends in a root CA that is not in this client's trust bundle ({trust})",
        "pass that root CA with --ca",
    ),
    "certificate has expired": (
        "server-cert-expired",
        "the server's certificate (or a CA certificate in its chain) has expired",
        "renew it (`grpcpki renew NAME`) and reload the server; check the server clock too",
    ),
    "certificate is not yet valid": (
        "server-cert-not-yet-valid",
        "the server's certificate is not valid yet (its notBefore is in the future), or this machine's "
        "clock is behind",
        "check both clocks (NTP); reissue without a future start date",
    ),
    "unsupported certificate purpose": (
        "server-cert-wrong-usage",
        "the server's certificate is not allowed for TLS servers (its extended key usage lacks "
        "serverAuth — a client certificate used as a server certificate?)",
        "issue a server certificate for it: `grpcpki issue server NAME`",
    ),
    "invalid CA certificate": (
        "server-chain-bad-intermediate",
        "a CA certificate in the server's chain is not marked as a CA (basicConstraints CA:FALSE)",
        "rebuild the chain with a real intermediate CA (`grpcpki ca` commands) and reissue the server certificate",
    ),
}


def issue_command(kind: str, name: str, sans: Sequence[str]) -> str:
    """The `grpcpki issue KIND NAME ...` that makes a certificate with these SANs again
    (``sans`` as ``"URI:spiffe://..."``, ``"DNS:..."``, ``"IP:..."``): for a revoked one, which
    `grpcpki renew` cannot reissue."""
    flags: list[str] = []
    for san in sans:
        kind_, _, value = san.partition(":")
        kind_ = kind_.upper()
        if kind_ == "URI":
            flags.append(f"--spiffe-id {value}" if value.startswith("spiffe://") else f"--uri {value}")
        elif kind_ == "DNS" and value.lower() != name.lower():  # NAME itself becomes a DNS SAN
            flags.append(f"--dns {value}")
        elif kind_ == "IP" and not (name == "localhost" and value in ("127.0.0.1", "::1")):  # added for localhost
            flags.append(f"--ip {value}")
    return " ".join(["grpcpki issue", kind, name, *flags])


def tail(details: str) -> str:
    """The distinctive end of a grpc ``details()`` string, without the fixed preamble."""
    text = details.strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    # Drop the "UNKNOWN: ipv4:127.0.0.1:PORT: " / "UNAVAILABLE: ipv6:[::1]:PORT: " address prefix.
    text = re.sub(r"^[A-Z_]+: (?:ipv4|ipv6|unix|dns):\S+: ", "", text)
    # BoringSSL appends ": OK" (the X509 verify result of the *last* check) — noise (rule 1).
    return re.sub(r": OK$", "", text)


def split_target(target: str) -> tuple[str, str]:
    """("host", "port") from "host:port", "[v6]:port", "dns:///host:port" or "ipv4:host:port"."""
    rest = re.sub(r"^(?:dns:(?://[^/]*)?/|ipv4:|ipv6:)", "", target)
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        return host, port.lstrip(":")
    host, sep, port = rest.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return rest, ""
    return host, port


def explain(
    code: str,
    details: str,
    *,
    target: str,
    mode: Mode = "mtls",
    server_name: str | None = None,
    trust: str | None = None,
    server_sans: Sequence[str] | None = None,
    timeout: float | None = None,
) -> Diagnosis:
    """Read a failed call: ``code`` is the status name (``"UNAVAILABLE"``), ``details`` its details().

    ``target`` is what was dialed, ``server_name`` the ``grpc.ssl_target_name_override`` if any,
    ``trust`` a short description of the client's trust bundle (file name), ``server_sans`` the
    SANs of the server certificate when the caller knows them (grpc never reports them).
    """
    code = code.upper().removeprefix("STATUSCODE.")
    text = tail(details)
    low = text.lower()
    host, port = split_target(target)
    checked = server_name or host
    trust_words = trust or "grpc's built-in roots"

    def make(kind: str, cause: str, fix: str, certain: bool = True) -> Diagnosis:
        return Diagnosis(code=code, kind=kind, cause=cause, fix=fix, certain=certain)

    # Application-level answers: the handshake worked, the server said no.
    if code == "PERMISSION_DENIED":
        return make(
            "permission-denied",
            f"the TLS handshake succeeded but the server refused this identity: {details.strip()}",
            "add the identity to the server's allow list (serve --allow ID), or connect with a "
            "certificate it allows",
        )
    if code == "UNIMPLEMENTED":
        return make(
            "unimplemented",
            f"the server at {target} does not implement helloworld.Greeter/SayHello",
            "point --server at a Greeter server (`grpcpki serve`)",
        )
    if code == "DEADLINE_EXCEEDED":
        return make(
            "deadline-exceeded",
            f"no answer within {timeout:g} s" if timeout else "no answer within the deadline",
            "the server may be overloaded or stuck, or packets are dropped on the way; raise --timeout "
            "to check (TLS failures are reported immediately, not as timeouts, since greet does not "
            "use wait_for_ready)",
        )
    # A certificate whose CN matches but whose SANs hold no DNS name at all passes the handshake's
    # hostname check (X509_check_host falls back to the CN when there is no DNS SAN), then fails
    # grpc's per-call check with UNAUTHENTICATED "call host does not match SSL server name"
    # (measured on grpcio 1.85.3: CN=localhost, SAN IP:127.0.0.1 only, dial localhost).
    call_host = "call host does not match ssl server name" in low
    if code == "UNAUTHENTICATED" and " is revoked" in low:
        # The handshake worked; `grpcpki serve` found the client's serial in its CRL (per call,
        # as grpcio cannot check a CRL in the handshake). Servers that check the CRL in the
        # handshake instead (Go, Envoy) read as 'Socket closed' or 'tls: revoked certificate'.
        match = _REVOKED_RE.search(text)
        serial = f" (serial {match.group(1)})" if match else ""
        updated = _UPDATED_RE.search(text)
        crl = f"the server's CRL ({updated.group(1)})" if updated else "the server's CRL"
        return make(
            "client-cert-revoked",
            f"the server says this client's certificate{serial} is revoked: it is listed in {crl}, so every "
            "call made with this certificate is refused",
            _REVOKED_FIX,
        )
    if code == "UNAUTHENTICATED" and "hostname verification" not in low and not call_host:
        return make("unauthenticated", f"the server refused the call as unauthenticated: {text}", _DOCTOR)

    # Connection-level failures (grpc-errors.md rules 1-6).
    match = _VERIFY_RE.search(text)
    if match:
        reason = match.group(1).strip()
        kind, cause, fix = _SERVER_CHAIN_REASONS.get(
            reason,
            (
                "server-cert-rejected",
                f"this client rejected the server's certificate: {reason}",
                _DOCTOR,
            ),
        )
        # d, p and o3 give the same text (grpc-errors.md): not certain which of them it is.
        certain = kind != "server-cert-untrusted"
        return make(kind, cause.format(trust=trust_words), fix, certain)

    if "wrong_version_number" in low:
        # Rule 2; the "Invalid certificate verification context" suffix is an artefact.
        return make(
            "server-not-tls",
            f"the server at {target} does not speak TLS (it is a plaintext server)",
            "dial it with --plaintext, or restart the server with TLS",
        )

    if "hostname verification check failed" in low or call_host:
        # Rule 3: grpc names neither the checked name nor the certificate's SANs.
        how = (
            "an IP address SAN is needed: a DNS SAN or the CN never matches an IP target"
            if is_ip(checked)
            else "a DNS SAN is needed (the CN is only used when the certificate has no SAN at all)"
        )
        cause = f"the server's certificate is trusted but not issued for the name this client checked, {checked!r}"
        if server_name:
            cause += f" (from --server-name; dialed {host})"
        if server_sans is not None:
            cause += f"; the certificate covers: {', '.join(server_sans) or 'no SANs'}"
        return make(
            "hostname-mismatch",
            f"{cause} — {how}",
            "dial a name the certificate covers, or pass --server-name with one of its names, or reissue "
            f"the server certificate with the SAN, keeping its other names "
            f"(`grpcpki issue server NAME --{'ip' if is_ip(checked) else 'dns'} {checked} ... --replace`)",
        )

    # A server that rejects the client after the TLS 1.3 handshake sends an alert (OpenSSL-based
    # servers such as grpc-js and Go send certificate_required / bad_certificate) and grpc core
    # reports the undecryptable record as 'Unwrap failed (TSI_DATA_CORRUPTED)'; BoringSSL-based
    # grpc servers just close, which reads 'Socket closed' (grpc-errors.md rule 4). Same meaning.
    server_hung_up = "socket closed" in low or "connection reset by peer" in low
    if server_hung_up or ("unwrap failed" in low and "tsi_data_corrupted" in low):
        if mode == "plaintext":
            return make(
                "client-plaintext-server-tls",
                f"the server at {target} closed the connection: it expects TLS and this client spoke plaintext",
                "drop --plaintext and pass the CA (and client certificate for mTLS)",
            )
        if mode == "tls":
            return make(
                "server-requires-client-cert",
                "the server closed the connection during the handshake: it most likely requires a client "
                "certificate (mTLS) and this client sent none",
                "connect with a client certificate (--name CLIENT, or --cert/--key), or run the server with --tls",
                certain=False,
            )
        return make(
            "server-rejected-client",
            "the server closed the connection during the handshake: it rejected this client's certificate "
            "(issued by a CA it does not trust, expired, or without the clientAuth usage); the client cannot "
            "tell which — the server's log line 'Handshake failed ...' names it",
            f"check that the server trusts the CA that issued this client certificate; {_DOCTOR}",
            certain=False,
        )

    if "failed to create security handshaker" in low:
        # Rule 5: local material unusable (key/cert mismatch, unparsable roots).
        return make(
            "local-credentials-unusable",
            "this client's own TLS material is unusable: the key does not match the certificate, or the "
            "CA file holds no certificate",
            "check --cert/--key/--ca (`grpcpki doctor`)",
        )

    if "connection refused" in low:
        return make(
            "connection-refused",
            f"nothing is listening on {target}",
            "start the server (`grpcpki serve`) or fix --server HOST:PORT",
        )

    if "dns resolution failed" in low or "name or service not known" in low or "not resolve" in low:
        return make(
            "dns-failure",
            f"the host name {host!r} does not resolve",
            "check the spelling, or dial an IP address with --server-name NAME for the certificate check",
        )

    if "timed out" in low or "timeout" in low:
        return make(
            "connect-timeout",
            f"the connection to {target} timed out: a firewall may drop packets, or the host is down",
            "check the address and that the port is reachable",
        )

    if "handshake" in low or "ssl" in low or "tsi_" in low:
        return make("tls-failure", f"the TLS handshake failed: {text}", _DOCTOR, certain=False)

    return make(
        "other",
        f"the call failed: {text or code}",
        "rerun with --verbose for grpc's own details",
        certain=False,
    )


__all__ = [
    "Diagnosis", "GreeterError", "MODE_WORDS", "Mode", "explain", "is_ip", "issue_command", "split_target", "tail",
]
