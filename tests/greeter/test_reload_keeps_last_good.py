"""serve keeps the last good material (issue 9): certificate files replaced by a client-only, an
expired or a mismatched pair are not hot-loaded; a running client keeps succeeding on fresh
connections, serve logs one line saying why, and a later fit pair is picked up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from greeter_support import Files, Served, served_serial
from support import cli_env

from grpcpki.engine import CA, Role


def _replace(target: Path, data: bytes) -> None:
    """Atomic replace, as grpcpki and most deploy tools do (a rename over the old file)."""
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_bytes(data)
    os.chmod(temp, 0o600)
    os.replace(temp, target)


def _wait_for(server: Served, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr():
        assert time.monotonic() < deadline, f"serve never logged {text!r}:\n{server.stderr()}"
        time.sleep(0.05)


def test_unfit_replacements_are_refused_and_a_running_client_keeps_succeeding(
    serve: type[Served], files: Files, ca: CA, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(files.dir / name, live / name)
    cert, key = live / "server.crt", live / "server.key"
    server = serve("--cert", str(cert), "--key", str(key), "--ca", str(live / "ca.crt"))
    client = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "greet", "--server", server.address, *files.client_args(),
         "--count", "60", "--interval", "50ms", "--timeout", "5s", "--new-connection", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )
    expired = ca.issue(Role.SERVER, "localhost", days=1, now=datetime.now(UTC) - timedelta(days=3))
    client_only = ca.issue(Role.CLIENT, "localhost")  # DNS:localhost too, but clientAuth only
    try:
        # A client-only certificate (what a wrong `issue ... --replace` once produced).
        _replace(key, client_only.key_pem)
        _replace(cert, client_only.chain_pem)
        _wait_for(server, "not for servers (extended key usage clientAuth, no serverAuth)")
        # A certificate for other names (the SPIFFE client: both EKUs, but not DNS:localhost).
        _replace(key, files.key("client").read_bytes())
        _replace(cert, files.cert("client").read_bytes())
        _wait_for(server, "drops names clients dial: DNS:localhost")
        # An expired server certificate from the same CA.
        _replace(key, expired.key_pem)
        _replace(cert, expired.chain_pem)
        _wait_for(server, "expired on")
        # A server certificate with the key of another one.
        _replace(key, files.key("server2").read_bytes())
        _replace(cert, files.cert("server").read_bytes())
        _wait_for(server, "does not belong to the certificate")
        # A fit rotation is picked up.
        _replace(key, files.key("server2").read_bytes())
        _replace(cert, files.cert("server2").read_bytes())
        _wait_for(server, "reloaded certificate")
        assert served_serial(server.port, files) == files.serials["server2"]
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    summary = lines[-1]
    assert client.returncode == 0, out + err
    assert summary["calls"] == 60 and summary["failed"] == 0, summary
    code, _rest, stderr = server.stop(signal.SIGTERM)
    assert code == 0
    refusals = [line for line in stderr.splitlines() if "unfit to serve" in line or "were not loaded" in line]
    assert refusals and all("still serving the previous certificate" in line for line in refusals), stderr
    # One line per distinct file state, not one per handshake.
    assert len(refusals) <= 10, stderr


def test_a_server_from_another_ca_than_its_clients_still_reloads(files: Files, ca: CA, tmp_path: Path) -> None:
    """The chain check applies only when the running certificate chains to the trust bundle."""
    from grpcpki.greeter import TlsFiles
    from grpcpki.greeter.server import CertificateReloader, ReloadRecord

    other = CA.create("Public-ish CA")
    first, second = other.issue(Role.SERVER, "localhost"), other.issue(Role.SERVER, "localhost")
    (tmp_path / "s.crt").write_bytes(first.chain_pem)
    (tmp_path / "s.key").write_bytes(first.key_pem)
    shutil.copy(files.ca, tmp_path / "clients-ca.crt")
    records: list[ReloadRecord] = []
    reloader = CertificateReloader(
        TlsFiles(tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "clients-ca.crt"),
        require_client_cert=True, on_reload=records.append,
    )
    _replace(tmp_path / "s.key", second.key_pem)
    _replace(tmp_path / "s.crt", second.chain_pem)
    assert reloader() is not None, records
    assert records[-1].loaded
