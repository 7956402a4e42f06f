"""The catalogue of gRPC/TLS failures: what each stack prints, what it means, what to do.

One row (:class:`Failure`) per cause. Every explainer reads this table and nothing else:
:func:`grpcpki.diagnosis.explain.explain` (a failed call's status text), :mod:`.serverlog`
(``grpcpki serve``'s handshake log lines), :mod:`.probe` (TLS alerts and OpenSSL reasons on the
wire) and :mod:`.failure` (which doctor findings pin a reading down). Adding a failure case is one
row here plus one row in tests/diagnosis/test_catalogue.py (and a scenario in test_scenarios.py
when a real server can reproduce it). docs/failures.md is the same table for people, with the
measurements behind each row; tests keep the two in step.

Signatures are substrings of what a stack prints, matched case-insensitively; when several
match, the longest wins ("self signed certificate in certificate chain" over "self signed
certificate"). Placeholders in ``cause``/``fix``/``server_log`` (``{target}``, ``{trust}``,
``{trusted}``...) are filled by the explainer that prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CATALOGUE",
    "NOT_TLS_REASONS",
    "Failure",
    "Signature",
    "by_doctor_finding",
    "by_kind",
    "by_probe_finding",
    "match",
    "proofs",
    "verify_reason",
]

Stack = Literal["grpcio", "grpc-go", "grpc-js", "openssl"]
Seen = Literal[
    "status",  # a failed call's status details() on the client (grpc core: "last error: ...")
    "verify",  # an X509 verify reason in CERTIFICATE_VERIFY_FAILED (client status or server log)
    "server-log",  # the server's own log line about a handshake it refused
    "alert",  # the TLS alert the refusing side sends (RFC 8446 section 6.2 names)
    "reason",  # an OpenSSL/BoringSSL error reason, as Python's ssl module reports it
]
Side = Literal["server", "client", "local", "network", "call"]


@dataclass(frozen=True)
class Signature:
    stack: Stack
    seen: Seen
    text: str


@dataclass(frozen=True)
class Failure:
    """One cause of a failed gRPC connection or call.

    ``refused_by``: ``client`` (this client refused the server's certificate), ``server`` (the
    server refused this client), ``local`` (own files unusable), ``network``, ``call`` (the
    handshake worked; the call was refused). ``why`` completes "the server refused this client's
    certificate because ..." for server-side refusals. ``doctor``: the doctor/probe finding ids
    that prove this cause, most specific first. ``probe``: the probe finding for its TLS alert.
    ``narrows``: for a reading from grpc's text alone, the findings on the server's chain that
    say which of its possible causes it is, most specific first.
    ``server_log``: what ``grpcpki serve`` prints when its handshake log shows this cause.
    ``modes``: the client modes the reading applies to (``Socket closed`` means one thing to a
    plaintext client and another to an mTLS one).
    """

    kind: str
    refused_by: Side
    cause: str
    fix: str
    signatures: tuple[Signature, ...] = ()
    certain: bool = True
    why: str | None = None
    doctor: tuple[str, ...] = ()
    narrows: tuple[str, ...] = ()
    probe: str | None = None
    server_log: str | None = None
    modes: frozenset[str] = frozenset({"mtls", "tls", "plaintext"})


def _sigs(stack: Stack, seen: Seen, *texts: str) -> tuple[Signature, ...]:
    return tuple(Signature(stack, seen, text) for text in texts)


# OpenSSL/BoringSSL reasons that mean "the bytes that came are not TLS", on either side: a TLS
# client reading a plaintext server (probe), a TLS server reading a plaintext client (serve's log).
NOT_TLS_REASONS: tuple[str, ...] = (
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_TOO_LONG",
    "RECORD_LAYER_FAILURE",  # OpenSSL 3's name for a record that is not TLS
)

_DOCTOR = "run `grpcpki doctor` on the server's files, or `grpcpki probe HOST:PORT` for a live look"
_SOCKET_CLOSED = (
    # grpcio: BoringSSL servers just close (TLS 1.3 rejection after the client's Finished).
    *_sigs("grpcio", "status", "Socket closed", "Connection reset by peer"),
    # grpcio against OpenSSL-based servers (grpc-js, Go) that send an alert after the handshake.
    *_sigs("grpcio", "status", "Unwrap failed (TSI_DATA_CORRUPTED)"),
)

CATALOGUE: tuple[Failure, ...] = (
    # ------------------------------------------------------------------ the call got through TLS
    Failure(
        "permission-denied",
        "call",
        "the TLS handshake succeeded but the server refused this identity: {details}",
        "add the identity to the server's allow list (serve --allow ID), or connect with a certificate it allows",
        _sigs("grpcio", "status", "PERMISSION_DENIED"),
    ),
    Failure(
        "unimplemented",
        "call",
        "the server at {target} does not implement helloworld.Greeter/SayHello",
        "point --server at a Greeter server (`grpcpki serve`)",
        _sigs("grpcio", "status", "UNIMPLEMENTED"),
    ),
    Failure(
        "deadline-exceeded",
        "network",
        "no answer within {deadline}",
        "the server may be overloaded or stuck, or packets are dropped on the way; raise --timeout to check "
        "(TLS failures are reported immediately, not as timeouts, since greet does not use wait_for_ready)",
        _sigs("grpcio", "status", "Deadline Exceeded"),
    ),
    Failure(
        "client-cert-revoked",
        "server",
        "the server says this client's certificate{serial} is revoked: it is listed in {crl}, so every call "
        "made with this certificate is refused",
        "a revoked certificate stays revoked and cannot be renewed: issue the client a new one "
        "(`grpcpki issue client NAME` with the same --spiffe-id/--dns as before) and use it",
        (
            *_sigs("grpcio", "status", " is revoked"),
            *_sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: certificate revoked"),
            *_sigs("grpc-go", "server-log", "tls: revoked certificate"),
            *_sigs("openssl", "alert", "certificate_revoked"),
        ),
        why="it is revoked",
        doctor=("revoked",),
        server_log="refused a revoked client certificate",
    ),
    Failure(
        "unauthenticated",
        "call",
        "the server refused the call as unauthenticated: {text}",
        _DOCTOR,
        _sigs("grpcio", "status", "UNAUTHENTICATED"),
    ),
    # ------------------------------------------------------- this client refused the server's chain
    Failure(
        "server-cert-untrusted",
        "client",
        "this client could not chain the server's certificate to its trust bundle ({trust}): the server "
        "certificate comes from another CA, or the server does not send its intermediate CA certificate",
        "pass the CA that issued the server certificate with --ca (or its PKI's ca.crt), and make the server "
        "present its full chain (leaf + intermediates: chain.pem rather than cert.pem)",
        (
            *_sigs("grpcio", "verify", "unable to get local issuer certificate", "self signed certificate in certificate chain"),
            *_sigs("grpc-go", "status", "x509: certificate signed by unknown authority"),
            *_sigs("grpc-js", "status", "unable to verify the first certificate"),
            *_sigs("grpcio", "server-log", "TLSV1_ALERT_UNKNOWN_CA"),
            *_sigs("openssl", "alert", "unknown_ca"),
        ),
        # d, p and o3 give the same text: untrusted CA, missing intermediate, issuer not a CA.
        certain=False,
        doctor=("chain-untrusted",),
        narrows=("missing-intermediate", "issuer-not-ca", "chain-untrusted", "trust-ca-expired"),
        server_log="a client refused this server's certificate: it does not trust the CA that issued it — give the "
        "client this PKI's ca.crt (its --ca / RootCAs)",
    ),
    Failure(
        "server-cert-self-signed",
        "client",
        "the server presents a self-signed certificate that is not in this client's trust bundle ({trust})",
        "trust that exact certificate with --ca, or serve a certificate issued by your CA",
        _sigs("grpcio", "verify", "self signed certificate"),
        narrows=("chain-untrusted", "issuer-not-ca"),
    ),
    Failure(
        "server-missing-intermediate",
        "client",
        "this client could not chain the server's certificate: the server does not send its intermediate CA",
        "make the server present its full chain, leaf then intermediates (pki/certs/NAME/chain.pem, not cert.pem)",
        doctor=("missing-intermediate",),
    ),
    Failure(
        "server-cert-bad-issuer",
        "client",
        "the server's certificate is issued by a certificate that is not a CA",
        "reissue the server certificate from a real CA",
        doctor=("issuer-not-ca",),
    ),
    Failure(
        "server-cert-expired",
        "client",
        "the server's certificate (or a CA certificate in its chain) has expired",
        "renew it (`grpcpki renew NAME`) and reload the server; check the server clock too",
        (
            *_sigs("grpcio", "verify", "certificate has expired"),
            *_sigs("grpc-go", "status", "x509: certificate has expired or is not yet valid"),
            *_sigs("grpcio", "server-log", "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        ),
        doctor=("expired",),
        narrows=("expired", "trust-ca-expired"),
        server_log="a client refused this server's certificate as expired (or the client's clock is wrong) — "
        "`grpcpki renew NAME` and this server picks the new one up without a restart",
    ),
    Failure(
        "server-cert-not-yet-valid",
        "client",
        "the server's certificate is not valid yet (its notBefore is in the future), or this machine's clock is behind",
        "check both clocks (NTP); reissue without a future start date",
        _sigs("grpcio", "verify", "certificate is not yet valid"),
        doctor=("not-yet-valid",),
        narrows=("not-yet-valid",),
    ),
    Failure(
        "server-cert-wrong-usage",
        "client",
        "the server's certificate is not allowed for TLS servers (its extended key usage lacks serverAuth — a "
        "client certificate used as a server certificate?)",
        "issue a server certificate under a new name (`grpcpki issue server NAME-server`) and serve that",
        (
            *_sigs("grpcio", "verify", "unsupported certificate purpose"),
            *_sigs("grpc-go", "status", "x509: certificate specifies an incompatible key usage"),
            *_sigs("grpcio", "server-log", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE"),
        ),
        doctor=("wrong-eku",),
        narrows=("wrong-eku",),
        server_log="a client refused this server's certificate as unsuitable (its key usage / serverAuth EKU) — "
        "`grpcpki doctor` on this server's certificate says what to reissue",
    ),
    Failure(
        "server-chain-bad-intermediate",
        "client",
        "a CA certificate in the server's chain is not marked as a CA (basicConstraints CA:FALSE)",
        "rebuild the chain with a real intermediate CA (`grpcpki ca` commands) and reissue the server certificate",
        _sigs("grpcio", "verify", "invalid CA certificate"),
        narrows=("issuer-not-ca",),
    ),
    Failure(
        "trusted-ca-expired",
        "client",
        "a CA in this client's trust bundle has expired",
        "rotate the CA (`grpcpki ca rotate begin`) and give clients the new ca.crt",
        doctor=("trust-ca-expired",),
    ),
    Failure(
        "server-cert-refused",
        "client",
        "a client refused this server's certificate",
        "`grpcpki probe HOST:PORT` from the client's side says why",
        (
            *_sigs("grpcio", "server-log", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"),
            *_sigs("openssl", "alert", "bad_certificate", "certificate_unknown"),
        ),
        certain=False,
        server_log="a client refused this server's certificate ({alert}): most often the name it dialed is not "
        "among {names}, or it does not trust the issuing CA — `grpcpki probe HOST:PORT` from the client's side "
        "names which",
    ),
    Failure(
        "server-cert-rejected",
        "client",
        "this client rejected the server's certificate: {reason}",
        _DOCTOR,
        doctor=("chain-rejected",),
        narrows=(
            "expired", "not-yet-valid", "wrong-eku", "missing-intermediate", "issuer-not-ca", "chain-untrusted",
            "name-mismatch", "cn-only", "key-usage-digital-signature", "weak-key", "weak-signature", "chain-rejected",
        ),
    ),
    Failure(
        "hostname-mismatch",
        "client",
        "the server's certificate is trusted but not issued for the name this client checked, {checked!r}{override}"
        "{covers} — {how}",
        "dial a name the certificate covers, or pass --server-name with one of its names, or add the name to "
        "the server certificate (`grpcpki doctor NAME --host {checked}` prints the command that keeps its other names)",
        (
            *_sigs("grpcio", "status", "Hostname Verification Check failed", "call host does not match SSL server name"),
            *_sigs("grpc-go", "status", "x509: certificate is valid for"),
            *_sigs("grpc-js", "status", "does not match certificate's altnames"),
            *_sigs("grpcio", "server-log", "No match found for server name: "),
        ),
        doctor=("name-mismatch", "cn-only"),
        narrows=("name-mismatch", "cn-only"),
        server_log="a client asked for {asked} (TLS SNI), which this certificate does not cover ({have}); its "
        "hostname check will most likely fail — it should dial one of those names or set --server-name, or reissue "
        "this certificate with --dns {asked}",
    ),
    # ------------------------------------------------------------- the wire does not carry TLS/h2
    Failure(
        "server-not-tls",
        "client",
        "the server at {target} does not speak TLS (it is a plaintext server)",
        "dial it with --plaintext, or restart the server with TLS (`grpcpki serve --name NAME`)",
        (
            *_sigs("grpcio", "status", "WRONG_VERSION_NUMBER"),
            *_sigs("openssl", "reason", *NOT_TLS_REASONS),
        ),
        doctor=("plaintext-server", "not-tls"),
    ),
    # ------------------------------------------------------------ the server refused this client
    Failure(
        "client-plaintext-server-tls",
        "server",
        "the server at {target} closed the connection: it expects TLS and this client spoke plaintext",
        "drop --plaintext and pass the CA (and client certificate for mTLS)",
        (*_SOCKET_CLOSED, *_sigs("grpcio", "server-log", *NOT_TLS_REASONS)),
        server_log="refused {what} — clients must dial this port with TLS",
        modes=frozenset({"plaintext"}),
    ),
    Failure(
        "server-requires-client-cert",
        "server",
        "the server closed the connection during the handshake: it most likely requires a client certificate (mTLS) "
        "and this client sent none",
        "connect with a client certificate (--name CLIENT, or --cert/--key), or run the server with --tls",
        _SOCKET_CLOSED,
        certain=False,
        modes=frozenset({"tls"}),
    ),
    Failure(
        "client-cert-missing",
        "server",
        "the server at {where} requires a client certificate (mTLS) and this client sent none",
        "connect with a client certificate from a CA the server trusts: --name CLIENT, or --cert FILE --key FILE "
        "(make one with `grpcpki issue client NAME`); or run the server with --tls if clients need no certificate",
        (
            *_sigs("grpcio", "server-log", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
            *_sigs("grpc-go", "server-log", "tls: client didn't provide a certificate"),
            *_sigs("grpc-go", "status", "remote error: tls: certificate required"),
            *_sigs("openssl", "alert", "certificate_required"),
        ),
        why="it sent none",
        doctor=("server-requires-client-cert",),
        server_log="refused a client that sent no certificate — clients must present one issued by {trusted} "
        "(greet --name CLIENT; or serve --tls to not require one)",
    ),
    Failure(
        "server-rejected-client",
        "server",
        "the server closed the connection during the handshake: it rejected this client's certificate (issued by a "
        "CA it does not trust, expired, or without the clientAuth usage); the client cannot tell which — the "
        "server's log line 'Handshake failed ...' names it",
        f"check that the server trusts the CA that issued this client certificate; {_DOCTOR}",
        _SOCKET_CLOSED,
        certain=False,
        modes=frozenset({"mtls"}),
    ),
    Failure(
        "client-cert-self-signed",
        "server",
        "the server refused this client's self-signed certificate",
        "use a client certificate issued by the CA the server trusts (`grpcpki issue client NAME`)",
        _sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: self signed certificate"),
        why="it is self-signed",
        server_log="refused a self-signed client certificate — clients must present one issued by {trusted}",
    ),
    Failure(
        "client-cert-expired",
        "server",
        "the server refused this client's certificate: it has expired",
        "renew the client certificate: grpcpki renew NAME",
        (
            *_sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: certificate has expired"),
            *_sigs("openssl", "alert", "certificate_expired"),
        ),
        why="it has expired",
        doctor=("expired",),
        probe="client-cert-rejected-expired",
        server_log="refused an expired client certificate — the client must renew it (`grpcpki renew NAME`); "
        "if it looks valid, check the clocks",
    ),
    Failure(
        "client-cert-not-yet-valid",
        "server",
        "the server refused this client's certificate: it is not valid yet",
        "check both clocks (timedatectl status); reissue without a future start date",
        _sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: certificate is not yet valid"),
        why="it is not valid yet",
        doctor=("not-yet-valid",),
        server_log="refused a client certificate that is not valid yet — one of the clocks is wrong, or it was "
        "issued for later",
    ),
    Failure(
        "client-cert-wrong-usage",
        "server",
        "the server refused this client's certificate: it is not made for clients (no clientAuth extended key usage)",
        "issue a client certificate under a new name (`grpcpki issue client NAME-client`) and call with it",
        (
            *_sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: unsupported certificate purpose"),
            *_sigs("grpc-go", "server-log", "x509: certificate specifies an incompatible key usage"),
            *_sigs("openssl", "alert", "unsupported_certificate"),
        ),
        why="it is not made for clients (no clientAuth extended key usage)",
        doctor=("wrong-eku", "key-usage-digital-signature"),
        probe="client-cert-rejected-purpose",
        server_log="refused a certificate that is not made for clients (its extended key usage lacks clientAuth) — "
        "the client needs a client certificate (`grpcpki issue client NAME`), not this server's",
    ),
    Failure(
        "client-missing-intermediate",
        "server",
        "the server refused this client's certificate: its chain lacks an intermediate CA",
        "call with the full chain, leaf then intermediates (pki/certs/NAME/chain.pem, not cert.pem)",
        why="its chain lacks an intermediate CA",
        doctor=("missing-intermediate",),
    ),
    Failure(
        "client-cert-bad-issuer",
        "server",
        "the server refused this client's certificate: its issuer is not a CA",
        "reissue the client certificate from a real CA",
        _sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: invalid CA certificate"),
        why="its issuer is not a CA",
        doctor=("issuer-not-ca",),
        server_log="refused a client certificate whose chain holds an intermediate that is not a CA (CA:FALSE)",
    ),
    Failure(
        "client-cert-weak",
        "server",
        "the server refused this client's certificate: its key or signature is too weak",
        "reissue it with a current key type (`grpcpki issue client NAME`)",
        why="its key or signature algorithm is too weak",
        doctor=("weak-key", "weak-signature"),
    ),
    Failure(
        "client-cert-untrusted",
        "server",
        "the server refused this client's certificate: it is not issued by a CA the server trusts",
        "use a client certificate issued by the CA the server trusts for clients (`grpcpki issue client NAME` in the "
        "server's PKI), or add this certificate's CA to the server's --ca bundle",
        (
            *_sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate"),
            *_sigs("grpcio", "server-log", "CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain"),
            *_sigs("grpc-go", "server-log", "tls: failed to verify certificate: x509: certificate signed by unknown authority"),
            *_sigs("openssl", "alert", "unknown_ca"),
        ),
        why="it is not issued by a CA the server trusts",
        doctor=("chain-untrusted",),
        probe="client-cert-rejected-unknown-ca",
        server_log="refused a client certificate that is not issued by a CA this server trusts ({trusted}) — issue "
        "the client's certificate from that CA, or add the client's CA to this server's --ca",
    ),
    Failure(
        "client-cert-rejected",
        "server",
        "the server refused this client's certificate",
        "check the server's log for the verification error",
        why="a strict verifier refuses it",
        doctor=("chain-rejected",),
        probe="client-cert-rejected",
        certain=False,
    ),
    # -------------------------------------------------------------------- local files, network
    Failure(
        "local-credentials-unusable",
        "local",
        "this client's own TLS material is unusable: the key does not match the certificate, or the CA file holds "
        "no certificate",
        "check --cert/--key/--ca (`grpcpki doctor`)",
        _sigs("grpcio", "status", "Failed to create security handshaker"),
        doctor=("key-mismatch", "not-pem", "wrong-pem-type", "file-missing"),
        narrows=("key-mismatch", "not-pem", "wrong-pem-type", "file-missing"),
    ),
    Failure(
        "connection-refused",
        "network",
        "nothing is listening on {target}",
        "start the server (`grpcpki serve`) or fix --server HOST:PORT",
        (*_sigs("grpcio", "status", "Connection refused"), *_sigs("grpc-go", "status", "connect: connection refused")),
        doctor=("connection-refused",),
    ),
    Failure(
        "dns-failure",
        "network",
        "the host name {host!r} does not resolve",
        "check the spelling, or dial an IP address with --server-name NAME for the certificate check",
        _sigs("grpcio", "status", "DNS resolution failed", "Name or service not known", "not resolve"),
        doctor=("connect-failed",),
    ),
    Failure(
        "connect-timeout",
        "network",
        "the connection to {target} timed out: a firewall may drop packets, or the host is down",
        "check the address and that the port is reachable",
        _sigs("grpcio", "status", "timed out", "timeout"),
        doctor=("connect-timeout",),
    ),
    Failure(
        "tls-failure",
        "client",
        "the TLS handshake failed: {text}",
        _DOCTOR,
        _sigs("grpcio", "status", "handshake", "ssl", "tsi_"),
        certain=False,
    ),
    Failure(
        "other",
        "call",
        "the call failed: {text}",
        "rerun with --verbose for grpc's own details",
        certain=False,
    ),
)

_BY_KIND = {f.kind: f for f in CATALOGUE}


def by_kind(kind: str) -> Failure:
    return _BY_KIND[kind]


def match(
    text: str,
    seen: Iterable[Seen],
    *,
    mode: str | None = None,
    stack: Stack | None = None,
    refused_by: Side | None = None,
) -> Failure | None:
    """The row whose signature (seen as one of ``seen``) is the longest substring of ``text``;
    ``mode``, ``stack`` and ``refused_by`` narrow the rows (an ``unknown_ca`` alert from a server
    refuses the client, from a client the server)."""
    low, where = text.lower(), set(seen)
    best: tuple[int, Failure] | None = None
    for failure in CATALOGUE:
        if (mode is not None and mode not in failure.modes) or (refused_by is not None and failure.refused_by != refused_by):
            continue
        for sig in failure.signatures:
            if sig.seen in where and (stack is None or sig.stack == stack) and sig.text.lower() in low:
                if best is None or len(sig.text) > best[0]:
                    best = (len(sig.text), failure)
    return best[1] if best else None


def by_probe_finding(finding_id: str) -> Failure | None:
    """The server-side refusal a probe finding (its TLS alert) stands for."""
    return next((f for f in CATALOGUE if f.probe == finding_id), None)


def by_doctor_finding(finding_id: str, refused_by: Side) -> Failure | None:
    """The row of that side which this doctor/probe finding proves (``expired`` on the server's
    chain is ``server-cert-expired``; on this client's own, ``client-cert-expired``)."""
    return next((f for f in CATALOGUE if f.refused_by == refused_by and finding_id in f.doctor), None)


def proofs(refused_by: Side) -> tuple[str, ...]:
    """Every finding id that proves a row of that side, the most specific cause first (catalogue
    order): which of several problems a server refused a client certificate for."""
    return tuple(dict.fromkeys(i for f in CATALOGUE if f.refused_by == refused_by for i in f.doctor))


def verify_reason(reason: str) -> Failure | None:
    """The row of an X509 verify reason (the whole text after ``CERTIFICATE_VERIFY_FAILED: ``) as
    the client reads it about the server's chain; None for a reason the catalogue lacks."""
    low = reason.strip().lower()
    return next((f for f in CATALOGUE for s in f.signatures if s.seen == "verify" and s.text.lower() == low), None)
