"""`renew --daemon`: CA rotation picked up through GetTrustBundle, the hook, signals, and an enrolled
workload's material proved end to end with `grpcpki serve` and `grpcpki greet`, hot reload included."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from cryptography import x509

from caservice_support import CaService, Setup
from support import cli_env, run_grpcpki
from grpcpki.engine import workload


def test_daemon_sees_a_ca_rotation_and_runs_the_hook(setup: Setup, service: CaService) -> None:
    assert setup.enroll(service, setup.token("web"), "web").code == 0
    out = setup.tmp / "web"
    old_leaf = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())[0]
    assert setup.cli("ca", "rotate", "begin").code == 0
    hook_log = setup.tmp / "hook.log"
    result = setup.daemon(service, "web", "--json", "--exec",
                          f'echo "$GRPCPKI_NAME $GRPCPKI_OLD_SERIAL $GRPCPKI_SERIAL $GRPCPKI_KEY_PATH" >> {hook_log}')
    assert result.code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["trust-bundle-updated", "renewed"]
    assert "CA was rotated" in events[1]["reason"]
    # The new bundle trusts both generations, and the new leaf comes from the new CA.
    bundle = x509.load_pem_x509_certificates((out / "ca.crt").read_bytes())
    assert len(bundle) == 2
    new_leaf = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())[0]
    assert new_leaf.issuer == bundle[-1].subject or new_leaf.issuer in [c.subject for c in bundle]
    aki = new_leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    old_aki = old_leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki != old_aki
    assert hook_log.read_text().split() == [
        "web", f"{old_leaf.serial_number:x}", f"{new_leaf.serial_number:x}", str((out / "key.pem").resolve())
    ]
    # Once renewed from the new CA, nothing is due.
    again = setup.daemon(service, "web", "--json")
    assert [json.loads(line)["event"] for line in again.stdout.splitlines()] == ["not-due"]


def test_renewal_falls_due_at_about_two_thirds_of_the_lifetime() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for serial in ("1", "abc", "ffee", "1234567"):
        current = workload.Current("web", serial, start, start + timedelta(days=30), b"", None)
        fraction = (current.renew_at() - start) / timedelta(days=30)
        assert 0.6 <= fraction <= 0.7
        assert workload.renewal_reason(current, b"", now=start + timedelta(days=17)) is None
        assert workload.renewal_reason(current, b"", now=start + timedelta(days=21.5)) is not None


def test_daemon_stops_cleanly_on_sigterm(setup: Setup, service: CaService) -> None:
    assert setup.enroll(service, setup.token("web"), "web").code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "renew", "--daemon", "--ca-server", service.mtls, "--dir",
         str(setup.tmp / "web")], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        seen = ""
        while "next check at" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.readline()
        assert "not due" in seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "SIGTERM received: stopping" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_enrolled_material_works_with_serve_and_greet_and_reloads(setup: Setup, service: CaService) -> None:
    assert setup.enroll(service, setup.token("app", "--dns", "localhost", kind="server"), "srv").code == 0
    assert setup.enroll(service, setup.token("web", "--spiffe-id", "spiffe://example.org/web"), "cli").code == 0
    srv, cli_dir = setup.tmp / "srv", setup.tmp / "cli"
    server = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "serve", "--cert", str(srv / "chain.pem"), "--key", str(srv / "key.pem"),
         "--ca", str(srv / "ca.crt"), "--listen", "127.0.0.1:0", "--json"],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]

        def greet() -> str:
            result = run_grpcpki("greet", "--cert", str(cli_dir / "chain.pem"), "--key", str(cli_dir / "key.pem"),
                                 "--ca", str(cli_dir / "ca.crt"), "--server", f"localhost:{port}", "--json")
            assert result.code == 0, result.output
            return result.stdout

        assert "Hello world" in greet()
        # The server's material renews in place; the running server picks it up (hot reload).
        assert setup.daemon(service, "srv", "--force").code == 0
        new_serial = f"{x509.load_pem_x509_certificates((srv / 'chain.pem').read_bytes())[0].serial_number:x}"
        assert "Hello world" in greet()
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=15)
    assert f"serial {new_serial[:16]}" in err
