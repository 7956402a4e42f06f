"""The proof: a live mTLS Greeter keeps answering while certificates and the CA rotate under it.

`grpcpki serve` re-reads its certificate, key and client-CA bundle when they change, and
`greet --new-connection` re-reads its files per connection; this test runs both while
`renew` and `ca rotate` replace every file, and checks that no call failed.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from rotation_helpers import make_pki

from grpcpki.engine import Pki

from support import run_grpcpki

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "grpcpki", "serve", "--help"], capture_output=True).returncode != 0,
    reason="grpcpki serve is not available",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_")}
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    return env


class Lines:
    """Collect a subprocess's JSON stdout lines in a thread (so its pipe never fills)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.items: list[dict] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().startswith("{"):
                self.items.append(json.loads(line))

    def stop(self) -> list[dict]:
        # SIGTERM, not SIGINT: a child of a non-interactive shell may ignore SIGINT.
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self._thread.join(timeout=5)
        return self.items


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "grpcpki", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=_env(), cwd=cwd,
    )


def served_serial(port: int) -> int:
    """The serial of the certificate the server presents now (stdlib TLS, no client cert needed:
    in TLS 1.3 the server's certificate arrives before it asks for ours)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _inventory_serial(pki_dir: Path, name: str) -> int:
    return int(Pki.open(pki_dir).find(name).serial, 16)


def _wait_for_served(port: int, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = served_serial(port)
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"server still presents serial {seen:x}, expected {expected:x}")


def _cli(pki_dir: Path, *args: str) -> None:
    result = run_grpcpki("--pki", str(pki_dir), *args)
    assert result.code == 0, result.output


def test_rotation_under_live_traffic(tmp_path: Path) -> None:
    make_pki(tmp_path)
    pki_dir = tmp_path / "pki"
    server = _start("--pki", str(pki_dir), "serve", "--name", "localhost", "--listen", "127.0.0.1:0", "--json",
                    cwd=tmp_path)
    loops: list[Lines] = []
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["port"])
        target = f"localhost:{port}"
        fresh = Lines(_start("--pki", str(pki_dir), "greet", "--name", "web", "--server", target, "--count", "0",
                             "--interval", "50ms", "--new-connection", "--json", cwd=tmp_path))
        persistent = Lines(_start("--pki", str(pki_dir), "greet", "--name", "web", "--server", target, "--count", "0",
                                  "--interval", "50ms", "--json", cwd=tmp_path))
        loops = [fresh, persistent]
        time.sleep(0.5)

        # A copy of the first-generation client certificate, to try after the old CA is gone.
        old_client = tmp_path / "old-client"
        old_client.mkdir()
        for name in ("chain.pem", "key.pem"):
            (old_client / name).write_bytes((pki_dir / "certs" / "web" / name).read_bytes())

        _cli(pki_dir, "renew", "localhost", "--force")
        _wait_for_served(port, _inventory_serial(pki_dir, "localhost"))
        _cli(pki_dir, "renew", "web", "--force")
        time.sleep(0.3)
        _cli(pki_dir, "ca", "rotate", "begin")
        time.sleep(0.3)
        _cli(pki_dir, "renew", "--all")
        _wait_for_served(port, _inventory_serial(pki_dir, "localhost"))
        time.sleep(0.3)
        _cli(pki_dir, "ca", "rotate", "finish")
        time.sleep(0.5)
        final_web = _inventory_serial(pki_dir, "web")

        results = {"fresh": fresh.stop(), "persistent": persistent.stop()}
        for label, items in results.items():
            calls = [i for i in items if "seq" in i]
            failed = [i for i in calls if not i.get("ok")]
            assert len(calls) > 20, (label, len(calls))
            assert not failed, (label, failed[:3])
        # The per-connection loop followed the client's renewals: it ended on the newest certificate.
        fresh_serials = [i.get("client_serial") for i in results["fresh"] if "seq" in i]
        assert int(fresh_serials[-1], 16) == final_web
        assert len(set(fresh_serials)) >= 3

        # After finish, a client still holding an old-CA certificate is turned away.
        rejected = run_grpcpki(
            "greet", "--cert", str(old_client / "chain.pem"), "--key", str(old_client / "key.pem"),
            "--ca", str(pki_dir / "ca.crt"), "--server", target, "--count", "1", "--timeout", "3s",
        )
        assert rejected.code == 1, rejected.output
        accepted = run_grpcpki("--pki", str(pki_dir), "greet", "--name", "web", "--server", target, "--count", "1")
        assert accepted.code == 0, accepted.output
    finally:
        for loop in loops:
            if loop.proc.poll() is None:
                loop.proc.kill()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
