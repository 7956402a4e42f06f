"""The pure halves of the diagnosis: combine() (grpc reading + probe + doctor -> one cause),
explain_grpc_line() (serve's plain words), the stderr rewriter in a child process, the
new grpc text measured here, and import hygiene."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grpcpki.engine.certs import CertInfo
from grpcpki.diagnosis.findings import Finding, Severity
from grpcpki.engine.names import San
from grpcpki.diagnosis.probe import ProbeResult
from grpcpki.greeter.client import ClientConfig
from grpcpki.diagnosis.explain import explain
from grpcpki.diagnosis.failure import Evidence, combine
from grpcpki.greeter.files import TlsFiles
from grpcpki.diagnosis.serverlog import explain_grpc_line

P = "failed to connect to all addresses; last error: "
CLOSED = P + "UNAVAILABLE: ipv4:127.0.0.1:4242: Socket closed"
HOSTNAME = P + "UNKNOWN: ipv4:127.0.0.1:4242: Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
UNTRUSTED = P + (
    "UNKNOWN: ipv4:127.0.0.1:4242: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
    "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK"
)
E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO
WHERE = "localhost:4242"


def leaf(*sans: str, cn: str = "localhost") -> CertInfo:
    now = datetime.now(UTC)
    return CertInfo(
        subject=f"CN={cn}", common_name=cn, issuer="CN=Test CA", serial=1, not_before=now, not_after=now,
        sans=tuple(San(*s.lower().split(":", 1)) for s in sans), key_type="ECDSA P-256",  # type: ignore[arg-type]
        signature_algorithm="ecdsa-with-SHA256", is_ca=False, path_len=None, key_usage=(), extended_key_usage=(),
        fingerprint_sha256="00", subject_key_id=None, authority_key_id=None, self_signed=False,
        has_san_extension=bool(sans), basic_constraints_critical=None, key_usage_critical=None,
    )


def probe(*findings: Finding, chain: tuple[CertInfo, ...] = (), **facts: object) -> ProbeResult:
    base: dict[str, object] = {"tcp_connected": True, "tls": True, "tls_version": "TLSv1.3", "alpn": "h2"}
    base.update(facts)
    return ProbeResult(host="localhost", port=4242, server_name="localhost", sni="localhost", chain=chain,
                       findings=findings, **base)  # type: ignore[arg-type]


def server_finding(fid: str, message: str = "m.") -> Finding:
    return Finding(fid, E, message, "grpcpki renew localhost", f"server chain at {WHERE}")


def config(mode: str = "mtls", **kw: object) -> ClientConfig:
    files = TlsFiles(Path("c.crt"), Path("c.key"), Path("ca.crt")) if mode == "mtls" else TlsFiles(ca=Path("ca.crt"))
    return ClientConfig(target=kw.pop("target", WHERE), mode=mode, files=files if mode != "plaintext" else TlsFiles(), **kw)  # type: ignore[arg-type]


def first(code: str, details: str, cfg: ClientConfig):  # type: ignore[no-untyped-def]
    return explain(code, details, target=cfg.target, mode=cfg.mode, server_name=cfg.server_name, trust="ca.crt")


# (id, mode, grpc details, evidence, expected kind, words in cause)
CASES = [
    ("b-no-cert", "tls", CLOSED, Evidence(probe(Finding("server-requires-client-cert", I, "x"), client_cert_required=True)),
     "client-cert-missing", "requires a client certificate"),
    ("c-other-ca", "mtls", CLOSED,
     Evidence(probe(), (Finding("chain-untrusted", E, "CN=web is issued by CN=Other CA, which is not in ca.crt.", "f", "c.crt"),)),
     "client-cert-untrusted", "CN=Other CA"),
    ("i-expired-beats-untrusted", "mtls", CLOSED,
     Evidence(probe(), (Finding("chain-untrusted", E, "u.", None, "c.crt"), Finding("expired", E, "CN=web expired.", "grpcpki renew web", "c.crt"))),
     "client-cert-expired", "because it has expired"),
    ("k-wrong-eku", "mtls", CLOSED, Evidence(probe(), (Finding("wrong-eku", E, "no clientAuth.", "grpcpki issue client web", "c.crt"),)),
     "client-cert-wrong-usage", "not made for clients"),
    ("go-server-alert", "mtls", CLOSED,
     Evidence(probe(Finding("client-cert-rejected-unknown-ca", E, "x does not trust the CA (TLS alert unknown_ca).", "f", "c.crt"))),
     "client-cert-untrusted", "does not trust the CA"),
    ("c-nothing-local", "mtls", CLOSED, Evidence(probe(Finding("client-cert-rejected", E, "rejected.", None, "c.crt"))),
     "server-rejected-client", "cannot tell which"),
    ("m-plaintext-client", "plaintext", CLOSED, Evidence(probe(client_cert_required=True)),
     "client-plaintext-server-tls", "speaks TLS (TLSv1.3, ALPN h2)"),
    ("p-missing-intermediate-first", "mtls", UNTRUSTED,
     Evidence(probe(server_finding("chain-untrusted"), server_finding("missing-intermediate", "lacks CN=Issuing."))),
     "server-missing-intermediate", "lacks CN=Issuing"),
    ("o3-non-ca-issuer", "mtls", UNTRUSTED, Evidence(probe(server_finding("issuer-not-ca", "issued by CN=x, which is not a CA."))),
     "server-cert-bad-issuer", "not a CA"),
    ("z-refused", "mtls", P + "UNKNOWN: ipv4:127.0.0.1:4242: Failed to connect to remote host: Connection refused",
     Evidence(probe(Finding("connection-refused", E, "nothing is listening on localhost:4242 (connection refused).", "start it", WHERE),
                    tcp_connected=False, tls=False)),
     "connection-refused", "connection refused"),
    ("no-evidence-keeps-first", "mtls", UNTRUSTED, Evidence(probe()), "server-cert-untrusted", "could not chain"),
]


@pytest.mark.parametrize(("case", "mode", "details", "evidence", "kind", "words"), CASES, ids=[c[0] for c in CASES])
def test_combine(case: str, mode: str, details: str, evidence: Evidence, kind: str, words: str) -> None:
    cfg = config(mode)
    result = combine(first("UNAVAILABLE", details, cfg), evidence, cfg)
    assert result.kind == kind, result
    assert words in result.cause, result.cause
    assert result.fix
    assert set(result.findings) == {f.id for f in evidence.all()}


def test_hostname_names_both_sides_and_the_ways_out() -> None:
    cfg = config(target="127.0.0.1:4242")
    evidence = Evidence(probe(server_finding("name-mismatch"), chain=(leaf("DNS:localhost", "DNS:api.internal"),)))
    result = combine(first("UNAVAILABLE", HOSTNAME, cfg), evidence, cfg)
    assert result.kind == "hostname-mismatch" and result.certain
    assert "you dialed 127.0.0.1; the certificate is for DNS:localhost, DNS:api.internal" in result.cause
    assert "only against IP SANs" in result.cause
    assert result.fix.startswith("use --server-name localhost") and "--ip 127.0.0.1" in result.fix


def test_hostname_with_override_suggests_dropping_it() -> None:
    cfg = config(server_name="wrong.example")
    evidence = Evidence(probe(server_finding("name-mismatch"), chain=(leaf("DNS:localhost"),)))
    result = combine(first("UNAVAILABLE", HOSTNAME, cfg), evidence, cfg)
    assert "checked the server certificate for 'wrong.example' (--server-name; dialed localhost)" in result.cause
    assert result.fix.startswith("drop --server-name")


def test_cn_only_certificate_is_described() -> None:
    cfg = config(target="127.0.0.1:4242")
    result = combine(first("UNAVAILABLE", HOSTNAME, cfg), Evidence(probe(chain=(leaf(),))), cfg)
    assert "no subjectAltName, only CN=localhost" in result.cause


def test_call_host_mismatch_is_a_hostname_problem() -> None:
    # Measured on grpcio 1.85.3: CN=localhost + SAN IP:127.0.0.1 only, dial localhost -> the handshake
    # passes (CN fallback without DNS SANs) and the per-call check fails.
    d = explain("UNAUTHENTICATED", "call host does not match SSL server name", target="localhost:4242")
    assert d.kind == "hostname-mismatch"


HANDSHAKE_FAILED = "I1125 22:24:06.908491   23711 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: "
SERVER_LINES = [
    (HANDSHAKE_FAILED + "error:100000c0:SSL routines:OPENSSL_internal:PEER_DID_NOT_RETURN_A_CERTIFICATE: "
     "Invalid certificate verification context",
     "refused a client that sent no certificate — clients must present one issued by CN=Test CA"),
    (HANDSHAKE_FAILED + "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: "
     "unable to get local issuer certificate",
     "not issued by a CA this server trusts (CN=Test CA)"),
    (HANDSHAKE_FAILED + "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired",
     "refused an expired client certificate"),
    (HANDSHAKE_FAILED + "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: "
     "unsupported certificate purpose",
     "lacks clientAuth"),
    (HANDSHAKE_FAILED + "error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
     "does not speak TLS"),
    ("E1125 22:24:06.908491   23711 ssl_transport_security.cc:3238] No match found for server name: nope.example",
     "a client asked for nope.example (TLS SNI), which this certificate does not cover (DNS:localhost)"),
    # The client refused *our* certificate and said so with an alert (Go clients; grpcio on a
    # failed hostname check): measured in tests/interop/test_go_crypto_tls.py.
    (HANDSHAKE_FAILED + "error:10000412:SSL routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE",
     "a client refused this server's certificate (bad_certificate): most often the name it dialed is not "
     "among DNS:localhost"),
    (HANDSHAKE_FAILED + "error:10000418:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA",
     "it does not trust the CA that issued it"),
]


@pytest.mark.parametrize(("line", "words"), SERVER_LINES, ids=["b", "c", "i", "k", "m", "e", "alert-bad-cert", "alert-unknown-ca"])
def test_server_log_lines_in_plain_words(line: str, words: str) -> None:
    text = explain_grpc_line(line, trusted="CN=Test CA", names=["DNS:localhost"])
    assert text is not None and words in text
    assert "(grpc: " in text  # grpc's own token stays searchable


@pytest.mark.parametrize(
    "line",
    [
        "✓ serving helloworld.Greeter on 127.0.0.1:50051",
        "I1125 22:24:06.908491   23711 chttp2_transport.cc:1] something else entirely",
        "I1125 22:24:06.908491   23711 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SYSCALL",
    ],
)
def test_other_lines_pass_through(line: str) -> None:
    assert explain_grpc_line(line) is None


def test_stderr_rewriter_rewrites_fd2_and_passes_the_rest(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from grpcpki.diagnosis.serverlog import StderrRewriter
        r = StderrRewriter(lambda line: "REWRITTEN " + line[:5] if line.startswith("I1125") else None)
        assert r.start()
        os.write(2, b"I1125 22:24:06.9 1 a.cc:1] Handshake\\n")       # C-level write to fd 2
        os.write(2, b"plain line from C\\npartial ")
        os.write(2, b"line joined\\n")
        print("python stderr still works", file=sys.stderr)
        r.stop()
        os.write(2, b"after stop\\n")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "REWRITTEN I1125" in lines
    assert "plain line from C" in lines and "partial line joined" in lines
    assert "python stderr still works" in lines
    assert lines[-1] == "after stop"


def test_cli_builds_no_cryptography_objects() -> None:
    import grpcpki.cli.diagnose_cmd as module

    source = Path(module.__file__).read_text()
    assert "cryptography" not in source
