"""Interoperability with Node's @grpc/grpc-js: the material `grpcpki issue` writes works with a
gRPC stack that is not grpc core (grpc-js does TLS with Node's OpenSSL, not BoringSSL).

Material is made with the real CLI (`init-ca`, `issue server localhost`, `issue client web
--spiffe-id ...`), once with a root CA only and once with `init-ca --intermediate`, and used
unchanged by the Node scripts in tests/interop/node/ (client.js, server.js):

- a grpc-js client calls `grpcpki serve` over mTLS, by DNS name and by IP;
- `grpcpki greet` calls a grpc-js server that requires a client certificate;
- the refusals happen where they should (no client certificate, a different CA, a chain
  without its intermediate);
- `grpcpki probe` reads a grpc-js server correctly (ALPN h2, client certificate required).

The pinned Node packages (tests/interop/node/package.json and package-lock.json) are installed
with `npm ci` once into ~/.cache/grpcpki-tests/node-<hash of the lock> and reused. Without
`node`/`npm` the module is skipped; if npm cannot install (no registry), every test is skipped
with npm's error: a skip, never a pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from interop_support import SPIFFE_ID, TIMEOUT, Background, Pki, cache_root, greet_json, start_server

NODE = shutil.which("node")
NPM = shutil.which("npm")
if NODE is None or NPM is None:
    pytest.skip(
        f"Node interop not tested: {'node' if NODE is None else 'npm'} is not on PATH "
        "(install Node.js 18+ with npm to run tests/interop/test_node_grpc_js.py)",
        allow_module_level=True,
    )

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
PROTO = HERE.parents[1] / "protos" / "helloworld.proto"
NPM_TIMEOUT = 300


# --- the Node packages, installed once outside the checkout ------------------------------------


def _npm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CI": "true",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_progress": "false",
    })
    # npm's default retry back-off (10 s to 60 s) makes an unreachable registry cost a minute
    # before the skip; keep the retries, shorten the waits (the environment may still override).
    env.setdefault("npm_config_fetch_retry_mintimeout", "1000")
    env.setdefault("npm_config_fetch_retry_maxtimeout", "5000")
    return env


def _npm_error(text: str, lines: int = 8) -> str:
    """npm's error lines without stack frames and object dumps: 'code ECONNREFUSED | ...'."""
    kept = []
    for line in text.splitlines():
        body = line.removeprefix("npm error").removeprefix("npm ERR!")
        if body[:1] == " " and body[1:2] not in (" ", "}", "") and "    at " not in line:
            kept.append(body.strip())
    return " | ".join(kept[:lines]) or "\n".join(text.strip().splitlines()[-lines:])


def _install(target: Path) -> None:
    """npm ci (npm install without a lock) into a staging directory, then rename it to target."""
    lock = NODE_DIR / "package-lock.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=target.parent))
    try:
        shutil.copy2(NODE_DIR / "package.json", staging / "package.json")
        verb = "install"
        if lock.exists():
            shutil.copy2(lock, staging / "package-lock.json")
            verb = "ci"
        # --ignore-scripts: nothing here needs an install script (protobufjs's only checks versions).
        assert NPM is not None
        argv = [NPM, verb, "--no-audit", "--no-fund", "--ignore-scripts", "--no-progress", "--loglevel=error"]
        try:
            proc = subprocess.run(
                argv, check=False, cwd=staging, env=_npm_env(), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=NPM_TIMEOUT,
            )
            failure = None if proc.returncode == 0 else f"exit {proc.returncode}: {_npm_error(proc.stderr or proc.stdout)}"
        except subprocess.TimeoutExpired:
            failure = f"no result after {NPM_TIMEOUT} s"
        except OSError as exc:
            failure = str(exc)
        if failure is not None:
            pytest.skip(
                f"Node interop NOT tested: `npm {verb}` could not install the pinned @grpc/grpc-js and "
                f"@grpc/proto-loader (is the npm registry reachable?) - {failure}"
            )
        (staging / ".complete").write_text(" ".join(argv[1:]) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # not another run that got there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class NodeRuntime:
    node_modules: Path
    node_version: str
    grpc_js_version: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_")}
        env["NODE_PATH"] = str(self.node_modules)
        return env


@pytest.fixture(scope="session")
def node_runtime() -> NodeRuntime:
    assert NODE is not None
    version = subprocess.run(
        [NODE, "--version"], check=False, capture_output=True, text=True, timeout=TIMEOUT,
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"Node interop not tested: node {version} is too old (the scripts need Node 18+)")
    lock = NODE_DIR / "package-lock.json"
    manifest = (NODE_DIR / "package.json").read_bytes()
    digest = hashlib.sha256((lock.read_bytes() if lock.exists() else b"") + b"\0" + manifest).hexdigest()[:16]
    target = cache_root() / f"node-{digest}"
    grpc_js = target / "node_modules" / "@grpc" / "grpc-js" / "package.json"
    if not ((target / ".complete").exists() and grpc_js.exists()):
        shutil.rmtree(target, ignore_errors=True)  # a half-deleted cache: start over
        _install(target)
    pinned = json.loads(manifest)["dependencies"]["@grpc/grpc-js"]
    installed = json.loads(grpc_js.read_text())["version"]
    assert installed == pinned, f"{target} holds @grpc/grpc-js {installed}, package.json pins {pinned}"
    return NodeRuntime(target / "node_modules", version, installed)


# --- the Node server (grpcpki serve, the PKIs and greet_json come from interop_support) ---------


def start_node_server(runtime: NodeRuntime, pki: Pki) -> tuple[Background, int]:
    assert NODE is not None
    server, announce = start_server(
        [NODE, str(NODE_DIR / "server.js"), "--proto", str(PROTO), "--cert", str(pki.chain("localhost")),
         "--key", str(pki.key("localhost")), "--ca", str(pki.ca), "--listen", "127.0.0.1:0"],
        runtime.env(),
        "the Node server",
    )
    return server, int(announce["port"])


@pytest.fixture(scope="module")
def node_server(node_runtime: NodeRuntime, pki: Pki) -> Iterator[tuple[Background, int]]:
    """server.js: grpc.ServerCredentials.createSsl(ca, [{cert_chain, private_key}], true)."""
    server, port = start_node_server(node_runtime, pki)
    try:
        yield server, port
    finally:
        server.stop()


def node_client(
    runtime: NodeRuntime, target: str, ca: Path, cert: Path | None = None, key: Path | None = None,
    name: str = "world",
) -> tuple[int, dict[str, Any], str]:
    """client.js once: (exit code, its JSON line, its stderr)."""
    assert NODE is not None
    argv = [NODE, str(NODE_DIR / "client.js"), "--proto", str(PROTO), "--target", target, "--ca", str(ca), "--name", name]
    if cert is not None and key is not None:
        argv += ["--cert", str(cert), "--key", str(key)]
    proc = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=TIMEOUT, env=runtime.env(), stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.returncode, json.loads(lines[0]), proc.stderr


# --- 1. grpc-js client -> grpcpki serve --------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["dns-san", "ip-san"])
def test_node_client_calls_grpcpki_serve(
    node_runtime: NodeRuntime, pki: Pki, grpcpki_serve: tuple[Background, int], host: str,
) -> None:
    """grpc.credentials.createSsl(ca, key, chain) against serve; grpc-js checks the dialed host
    against the certificate itself: DNS:localhost for localhost, IP:127.0.0.1 for the IP."""
    server, port = grpcpki_serve
    name = f"node via {host}"
    code, result, stderr = node_client(
        node_runtime, f"{host}:{port}", pki.ca, pki.chain("web"), pki.key("web"), name=name,
    )
    assert code == 0 and result["ok"], (result, stderr)
    assert result["reply"] == f"Hello {name}"
    assert result["identity_seen_by_server"] == SPIFFE_ID  # serve's grpcpki-peer-identity header
    seen = result["server_certificate"]
    assert seen["subject_cn"] == "localhost" and "DNS:localhost" in seen["sans"]
    assert seen["issuer_cn"] == pki.issuer_cn("localhost")  # the intermediate, with --intermediate
    # serve read the SPIFFE ID from the certificate grpc-js presented, and logged it.
    server.wait_for(
        lambda: f"OK SayHello('{name}') from {SPIFFE_ID}" in server.stderr(), "serve's log line for the call",
    )


# --- 2. grpcpki greet -> grpc-js server --------------------------------------------------------


def test_grpcpki_greet_calls_node_server(pki: Pki, node_server: tuple[Background, int]) -> None:
    """greet's chain.pem and key.pem are accepted by a grpc-js server that requires and verifies
    a client certificate; the server reads the SPIFFE ID and greet reports it back."""
    server, port = node_server
    code, call, output = greet_json(pki, "--name", "web", "--server", f"localhost:{port}", "--to", "greet")
    assert code == 0, output
    assert call["status"] == "OK" and call["reply"] == "Hello greet", output
    assert call["identity_seen_by_server"] == SPIFFE_ID, output
    seen = server.wait_for(
        lambda: [c for c in server.json_lines() if c.get("event") == "call" and c["name"] == "greet"],
        "the Node server's call line",
    )[0]
    assert seen["identity"] == SPIFFE_ID
    assert seen["peer_certificate"]["issuer_cn"] == pki.issuer_cn("web")


# --- 3. the intermediate travels in chain.pem, and only there ----------------------------------


def test_chain_pem_carries_the_intermediate(
    node_runtime: NodeRuntime, pki: Pki, grpcpki_serve: tuple[Background, int], node_server: tuple[Background, int],
) -> None:
    """The peers trust only ca.crt (the root): with --intermediate, the same calls with cert.pem
    (leaf alone) instead of chain.pem are refused in both directions, so the successes above are
    due to the intermediate in chain.pem. Without an intermediate the two files are the same."""
    if not pki.intermediate:
        assert pki.leaf("web").read_bytes() == pki.chain("web").read_bytes()
        assert pki.leaf("localhost").read_bytes() == pki.chain("localhost").read_bytes()
        return
    _, serve_port = grpcpki_serve
    code, result, stderr = node_client(
        node_runtime, f"localhost:{serve_port}", pki.ca, pki.leaf("web"), pki.key("web"), name="leaf only",
    )
    assert code == 1 and result["code_name"] == "UNAVAILABLE", (result, stderr)

    _, node_port = node_server
    code, call, output = greet_json(
        pki, "--cert", str(pki.leaf("web")), "--key", str(pki.key("web")), "--ca", str(pki.ca),
        "--server", f"localhost:{node_port}",
    )
    assert code == 1 and call["status"] == "UNAVAILABLE", output
    assert call["kind"] == "client-missing-intermediate", output  # greet names the cause


# --- 4. refusals -------------------------------------------------------------------------------


def test_node_client_without_certificate_is_refused_by_serve(
    node_runtime: NodeRuntime, pki: Pki, grpcpki_serve: tuple[Background, int],
) -> None:
    server, port = grpcpki_serve
    refusal = "refused a client that sent no certificate"
    before = server.stderr().count(refusal)
    code, result, stderr = node_client(node_runtime, f"localhost:{port}", pki.ca, name="no certificate")
    assert code == 1 and not result["ok"], (result, stderr)
    assert result["code_name"] == "UNAVAILABLE", result
    # grpc-js only says "Failed to connect"; serve's log says why.
    server.wait_for(lambda: server.stderr().count(refusal) > before, "serve's refusal line")
    assert "SayHello('no certificate')" not in server.stderr()


def test_node_client_trusting_another_ca_is_refused(
    node_runtime: NodeRuntime, pki: Pki, other_pki: Pki, grpcpki_serve: tuple[Background, int],
) -> None:
    server, port = grpcpki_serve
    code, result, stderr = node_client(
        node_runtime, f"localhost:{port}", other_pki.ca, pki.chain("web"), pki.key("web"), name="wrong trust",
    )
    assert code == 1 and result["code_name"] == "UNAVAILABLE", (result, stderr)
    # Node's OpenSSL wording, not grpc core's (which says "unable to get local issuer certificate"
    # in both cases): a leaf alone whose issuer is unknown is "unable to verify the first certificate".
    expected = "unable to get local issuer certificate" if pki.intermediate else "unable to verify the first certificate"
    assert expected in result["details"], result
    assert "SayHello('wrong trust')" not in server.stderr()


def test_greet_without_client_certificate_is_refused_by_node_server(
    pki: Pki, node_server: tuple[Background, int],
) -> None:
    server, port = node_server
    code, call, output = greet_json(pki, "--name", "web", "--tls-only", "--server", f"localhost:{port}", "--to", "tls-only")
    assert code == 1, output
    assert call["status"] == "UNAVAILABLE", output
    # The probe greet runs on failure sees the requirement...
    assert "server-requires-client-cert" in call["findings"], output
    assert not [c for c in server.json_lines() if c.get("event") == "call" and c["name"] == "tls-only"]


def test_greet_names_the_missing_client_certificate_for_a_node_server(
    pki: Pki, node_server: tuple[Background, int],
) -> None:
    _, port = node_server
    # grpc core reports grpc-js's TLS 1.3 certificate_required alert as 'Unwrap failed
    # (TSI_DATA_CORRUPTED)', not 'Socket closed'; greet must still name the cause.
    code, call, output = greet_json(pki, "--name", "web", "--tls-only", "--server", f"localhost:{port}")
    assert code == 1 and call["kind"] == "client-cert-missing", output


# --- 5. grpcpki probe -> grpc-js server --------------------------------------------------------


@pytest.mark.parametrize("with_client", [True, False], ids=["name-web", "no-client-cert"])
def test_probe_reads_node_server(pki: Pki, node_server: tuple[Background, int], with_client: bool) -> None:
    _, port = node_server
    extra = ["--name", "web"] if with_client else []
    result = pki.cli("probe", f"127.0.0.1:{port}", *extra, "--json")
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tcp_connected"] and report["tls"], report
    assert report["alpn"] == "h2"
    assert report["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert report["client_cert_requested"] is True and report["client_cert_required"] is True
    assert "server-requires-client-cert" in [f["id"] for f in report["findings"]]
    assert report["verified"] is True and report["chain_complete"] is True, report["verify_detail"]
    # The chain grpc-js presents starts with chain.pem. (With a root-only CA, Node's OpenSSL
    # completes the chain from the `ca` option and also sends the root: info chain-includes-root.)
    presented = [c["subject"] for c in report["chain"]]
    sent = [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pki.chain("localhost").read_bytes())]
    assert presented[: len(sent)] == sent, presented
    assert report["mutual_ok"] is (True if with_client else None)
    assert report["ok"] is True


# --- the Node server's own contract ------------------------------------------------------------


def test_node_server_stops_on_sigterm(node_runtime: NodeRuntime, other_pki: Pki) -> None:
    server, port = start_node_server(node_runtime, other_pki)
    try:
        assert port > 0
    finally:
        code = server.stop(timeout=10)
    assert code == 0, server.describe()
