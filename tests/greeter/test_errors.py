"""explain(): the client-side reading of failed calls, table-driven from the measured texts in docs/failures.md."""

from __future__ import annotations

import pytest

from grpcpki.diagnosis.explain import explain, tail
from grpcpki.engine.address import split_target

P = "failed to connect to all addresses; last error: "
VERIFY = P + (
    "UNKNOWN: ipv4:127.0.0.1:4242: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
    "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: {}: OK"
)
HOSTNAME = P + (
    "UNKNOWN: ipv4:127.0.0.1:4242: Custom verification check failed with error: "
    "UNAUTHENTICATED: Hostname Verification Check failed."
)
CLOSED = P + "UNAVAILABLE: ipv4:127.0.0.1:4242: Socket closed"

# (measured scenario, code, details, mode, expected kind, words the cause must contain)
CASES = [
    ("b/c/i/k", "UNAVAILABLE", CLOSED, "mtls", "server-rejected-client", "rejected this client's certificate"),
    ("b", "UNAVAILABLE", CLOSED, "tls", "server-requires-client-cert", "this client sent none"),
    # An OpenSSL-based server (grpc-js, Go) alerts instead of closing; grpc core reads the alert
    # record as corrupted data. Measured against @grpc/grpc-js 1.14.7 (tests/interop).
    ("b, grpc-js server", "UNAVAILABLE", P + "UNAVAILABLE: ipv4:127.0.0.1:4242: Unwrap failed (TSI_DATA_CORRUPTED)",
     "tls", "server-requires-client-cert", "this client sent none"),
    ("m", "UNAVAILABLE", CLOSED, "plaintext", "client-plaintext-server-tls", "this client spoke plaintext"),
    ("d/p/o3", "UNAVAILABLE", VERIFY.format("unable to get local issuer certificate"), "mtls",
     "server-cert-untrusted", "trust bundle (ca.crt)"),
    ("g", "UNAVAILABLE", VERIFY.format("certificate has expired"), "mtls", "server-cert-expired", "has expired"),
    ("h", "UNAVAILABLE", VERIFY.format("certificate is not yet valid"), "mtls", "server-cert-not-yet-valid", "clock"),
    ("j", "UNAVAILABLE", VERIFY.format("unsupported certificate purpose"), "mtls", "server-cert-wrong-usage",
     "serverAuth"),
    ("o4", "UNAVAILABLE", VERIFY.format("invalid CA certificate"), "mtls", "server-chain-bad-intermediate",
     "CA:FALSE"),
    ("l", "UNAVAILABLE", P + "UNKNOWN: ipv4:127.0.0.1:4242: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
     "SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate "
     "verification context", "mtls", "server-not-tls", "does not speak TLS"),
    ("e", "UNAVAILABLE", HOSTNAME, "mtls", "hostname-mismatch", "'localhost' — a DNS SAN is needed"),
    ("n2", "UNAVAILABLE", P + "UNKNOWN: ipv4:127.0.0.1:4242: Failed to create security handshaker.", "mtls",
     "local-credentials-unusable", "key does not match"),
    ("z", "UNAVAILABLE", P + "UNKNOWN: ipv4:127.0.0.1:4242: Failed to connect to remote host: Connection refused",
     "mtls", "connection-refused", "nothing is listening on localhost:4242"),
    ("wfr", "DEADLINE_EXCEEDED", "Deadline Exceeded", "mtls", "deadline-exceeded", "within 3 s"),
    ("allow", "PERMISSION_DENIED", "identity spiffe://x/y is not allowed to call this server", "mtls",
     "permission-denied", "spiffe://x/y"),
]


@pytest.mark.parametrize(("row", "code", "details", "mode", "kind", "words"), CASES, ids=[c[0] + "-" + c[4] for c in CASES])
def test_explain(row: str, code: str, details: str, mode: str, kind: str, words: str) -> None:
    d = explain(code, details, target="localhost:4242", mode=mode, trust="ca.crt", timeout=3)  # type: ignore[arg-type]
    assert d.kind == kind
    assert words in d.cause
    assert d.fix
    assert d.code == code


def test_hostname_mismatch_on_ip_target_and_override() -> None:
    on_ip = explain("UNAVAILABLE", HOSTNAME, target="127.0.0.1:4242")
    assert "an IP address SAN is needed" in on_ip.cause
    override = explain("UNAVAILABLE", HOSTNAME, target="127.0.0.1:4242", server_name="api.example")
    assert "'api.example' (from --server-name; dialed 127.0.0.1)" in override.cause
    known = explain("UNAVAILABLE", HOSTNAME, target="localhost:1", server_sans=["DNS:other.example"])
    assert "the certificate covers: DNS:other.example" in known.cause


def test_ambiguous_readings_say_so() -> None:
    assert not explain("UNAVAILABLE", CLOSED, target="h:1").certain
    assert not explain("UNAVAILABLE", VERIFY.format("unable to get local issuer certificate"), target="h:1").certain
    assert explain("UNAVAILABLE", VERIFY.format("certificate has expired"), target="h:1").certain


def test_tail_strips_preamble_address_and_ok() -> None:
    assert tail(VERIFY.format("certificate has expired")).endswith("CERTIFICATE_VERIFY_FAILED: certificate has expired")
    assert tail(CLOSED) == "Socket closed"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("localhost:50051", ("localhost", "50051")),
        ("[::1]:443", ("::1", "443")),
        ("dns:///api.example:8443", ("api.example", "8443")),
        ("ipv4:127.0.0.1:1", ("127.0.0.1", "1")),
        ("example.org", ("example.org", "")),
        ("::1", ("::1", "")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected
