"""The catalogue of failures (grpcpki/diagnosis/catalogue.py) and its page (docs/failures.md).

Adding a failure case: one row in the catalogue, one row in SAMPLES below (a text a real stack
printed, from a test that reproduces it), one section in docs/failures.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grpcpki.diagnosis.catalogue import CATALOGUE, NOT_TLS_REASONS, by_kind, match, verify_reason
from grpcpki.diagnosis.explain import explain
from grpcpki.diagnosis.findings import FINDINGS
from grpcpki.diagnosis.serverlog import explain_grpc_line

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "failures.md").read_text()
P = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:4242: "
LOG = "I1125 22:24:06.908491   23711 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: " \
    "error:1000007d:SSL routines:OPENSSL_internal:"

# (kind, where it is seen, text as printed, client mode) -> the row that reads it. Texts are the
# measured ones (docs/failures.md names the test that reproduces each).
SAMPLES: list[tuple[str, str, str, str | None]] = [
    ("server-cert-untrusted", "verify", "unable to get local issuer certificate", None),
    ("server-cert-untrusted", "verify", "self signed certificate in certificate chain", None),
    ("server-cert-self-signed", "verify", "self signed certificate", None),
    ("server-cert-expired", "verify", "certificate has expired", None),
    ("server-cert-not-yet-valid", "verify", "certificate is not yet valid", None),
    ("server-cert-wrong-usage", "verify", "unsupported certificate purpose", None),
    ("server-chain-bad-intermediate", "verify", "invalid CA certificate", None),
    ("hostname-mismatch", "status", P + "Custom verification check failed with error: UNAUTHENTICATED: "
     "Hostname Verification Check failed.", "mtls"),
    ("server-not-tls", "status", P + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
     "error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context",
     "mtls"),
    ("client-plaintext-server-tls", "status", P + "Socket closed", "plaintext"),
    ("server-requires-client-cert", "status", P + "Socket closed", "tls"),
    ("server-requires-client-cert", "status", P + "Unwrap failed (TSI_DATA_CORRUPTED)", "tls"),
    ("server-rejected-client", "status", P + "Socket closed", "mtls"),
    ("local-credentials-unusable", "status", P + "Failed to create security handshaker.", "mtls"),
    ("connection-refused", "status", P + "Failed to connect to remote host: Connection refused", "mtls"),
    ("dns-failure", "status", P + "DNS resolution failed for nope.invalid:1", "mtls"),
    ("connect-timeout", "status", P + "Connection timed out", "mtls"),
    ("tls-failure", "status", P + "Tls handshake failed (TSI_PROTOCOL_FAILURE): something new", "mtls"),
    ("client-cert-missing", "server-log", LOG + "PEER_DID_NOT_RETURN_A_CERTIFICATE", None),
    ("client-cert-untrusted", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate", None),
    ("client-cert-untrusted", "server-log",
     LOG + "CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain", None),
    ("client-cert-self-signed", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: self signed certificate", None),
    ("client-cert-expired", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: certificate has expired", None),
    ("client-cert-not-yet-valid", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: certificate is not yet valid", None),
    ("client-cert-wrong-usage", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: unsupported certificate purpose", None),
    ("client-cert-bad-issuer", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: invalid CA certificate", None),
    ("client-cert-revoked", "server-log", LOG + "CERTIFICATE_VERIFY_FAILED: certificate revoked", None),
    ("client-plaintext-server-tls", "server-log", LOG + "WRONG_VERSION_NUMBER", None),
    ("client-plaintext-server-tls", "server-log", LOG + "HTTP_REQUEST", None),
    ("server-cert-untrusted", "server-log", LOG + "TLSV1_ALERT_UNKNOWN_CA", None),
    ("server-cert-expired", "server-log", LOG + "SSLV3_ALERT_CERTIFICATE_EXPIRED", None),
    ("server-cert-wrong-usage", "server-log", LOG + "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", None),
    ("server-cert-refused", "server-log", LOG + "SSLV3_ALERT_BAD_CERTIFICATE", None),
    ("hostname-mismatch", "server-log",
     "E1125 22:24:06.908491   23711 ssl_transport_security.cc:1000] No match found for server name: localhost", None),
    # Go's crypto/tls and x509 texts, as tests/interop/test_go_crypto_tls.py measures them.
    ("server-cert-untrusted", "status", "tls: failed to verify certificate: x509: certificate signed by unknown authority",
     None),
    ("hostname-mismatch", "status", "tls: failed to verify certificate: x509: certificate is valid for localhost, "
     "not nope.example", None),
    ("client-cert-missing", "server-log", "tls: client didn't provide a certificate", None),
    ("client-cert-wrong-usage", "server-log",
     "tls: failed to verify certificate: x509: certificate specifies an incompatible key usage", None),
    # What the probe hears from servers that alert (Go, grpc-js, nginx).
    ("client-cert-untrusted", "alert", "unknown_ca", None),
    ("client-cert-expired", "alert", "certificate_expired", None),
    ("client-cert-wrong-usage", "alert", "unsupported_certificate", None),
    ("client-cert-missing", "alert", "certificate_required", None),
]


@pytest.mark.parametrize(("kind", "seen", "text", "mode"), SAMPLES, ids=[f"{s[0]}-{s[1]}-{i}" for i, s in enumerate(SAMPLES)])
def test_each_measured_text_reads_as_its_row(kind: str, seen: str, text: str, mode: str | None) -> None:
    if seen == "verify":
        row = verify_reason(text)
    elif seen == "alert":
        row = match(text, ["alert"], refused_by="server")
    else:
        row = match(text, [seen], mode=mode)  # type: ignore[list-item]
    assert row is not None and row.kind == kind, row


def test_every_row_is_read_and_documented() -> None:
    sampled = {s[0] for s in SAMPLES}
    # Rows only the live diagnosis reaches (a probe or doctor finding proves them; no stack prints them).
    proven_only = {f.kind for f in CATALOGUE if not f.signatures}
    status_only = {"permission-denied", "unimplemented", "deadline-exceeded", "client-cert-revoked", "unauthenticated",
                   "server-cert-rejected", "other"}
    assert {f.kind for f in CATALOGUE} == sampled | proven_only | status_only
    for failure in CATALOGUE:
        assert f"\n### {failure.kind}\n" in PAGE, f"docs/failures.md lacks a section for {failure.kind}"
        for sig in failure.signatures:
            assert f"`{sig.text}`" in PAGE, f"docs/failures.md does not quote {sig.text!r} ({failure.kind})"
        for finding in failure.doctor:
            assert finding in FINDINGS, (failure.kind, finding)


def test_rows_are_unique_and_complete() -> None:
    kinds = [f.kind for f in CATALOGUE]
    assert len(kinds) == len(set(kinds))
    for failure in CATALOGUE:
        assert failure.cause and failure.fix
        if failure.refused_by == "server" and failure.kind not in ("server-requires-client-cert", "server-rejected-client",
                                                                   "client-plaintext-server-tls"):
            assert failure.why, f"{failure.kind}: a server-side refusal needs its 'why'"


def test_one_list_of_not_tls_reasons() -> None:
    # The probe (TLS client reading a plaintext server) and serve's log (TLS server reading a
    # plaintext client) read the same reasons from the same tuple.
    for reason in NOT_TLS_REASONS:
        assert match(reason, ["reason"]) is by_kind("server-not-tls")
        line = explain_grpc_line(LOG + reason)
        assert line is not None and f"(grpc: {reason})" in line


def test_explain_reads_through_the_catalogue() -> None:
    d = explain("UNAVAILABLE", P + "Socket closed", target="localhost:1", mode="mtls")
    assert (d.kind, d.cause, d.certain) == ("server-rejected-client", by_kind("server-rejected-client").cause, False)


def test_docs_cite_the_project_catalogue_not_an_outside_file() -> None:
    anchors = set(re.findall(r"^#{2,3} (.+)$", PAGE, re.M))
    slugs = {re.sub(r"[^a-z0-9 -]", "", a.lower()).replace(" ", "-") for a in anchors}
    outside = "grpc-" + "errors.md"  # the measurements the project started from, outside the repository
    for path in [*REPO.joinpath("grpcpki").rglob("*.py"), *REPO.joinpath("tests").rglob("*.py"),
                 *REPO.joinpath("docs").glob("*.md"), REPO / "README.md"]:
        text = path.read_text()
        assert outside not in text, f"{path} cites a file outside the repository"
        for anchor in re.findall(r"failures\.md#([a-z0-9-]+)", text):
            assert anchor in slugs, f"{path} cites docs/failures.md#{anchor}, which does not exist"
