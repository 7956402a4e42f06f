"""The revoked-client row of issue #6's matrix, end to end: `grpcpki revoke` while `grpcpki serve`
keeps running, and the next call of the revoked client is refused with a status naming the serial
(grpcio cannot check a CRL in the handshake, so serve checks it per call; grpcpki.greeter.crl).

Everything through ``python -m grpcpki`` on 127.0.0.1, port 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from diagnosis_support import TIMEOUT, Run, env, run_many, start_servers

from grpcpki.engine import Pki, Role, cert_info
from grpcpki.engine.revocation import revoke

WEB = "spiffe://example.org/web"
BATCH = "spiffe://example.org/batch"


def _cli(cwd: Path, *args: str) -> Run:
    (run,) = run_many(args, cwd=cwd)
    assert run.code == 0, run.text
    return run


def _deploy(pki: Path, name: str, into: Path) -> list[str]:
    """Copy a leaf's files out of the PKI, as a deployed client holds them; its greet flags."""
    into.mkdir(exist_ok=True)
    shutil.copy(pki / "certs" / name / "chain.pem", into / f"{name}.crt")
    shutil.copy(pki / "certs" / name / "key.pem", into / f"{name}.key")
    shutil.copy(pki / "ca.crt", into / "ca.crt")
    return ["--cert", str(into / f"{name}.crt"), "--key", str(into / f"{name}.key"), "--ca", str(into / "ca.crt")]


def _serial(flags: list[str]) -> str:
    return cert_info(Path(flags[1]).read_bytes()).serial_hex


class Loop:
    """A persistent-connection `greet --count 0 --json`, its JSON lines collected as they come."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grpcpki", "greet", "--count", "0", "--interval", "50ms", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env(), cwd=cwd,
        )
        self.lines: list[dict[str, object]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append(json.loads(line))

    def wait_for(self, status: str, timeout: float = 10) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.get("status") == status:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {status} call from the greet loop: {self.lines}")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # greet ends a --count 0 loop on Ctrl-C
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_revoked_client_is_refused_on_its_next_call_without_a_restart(tmp_path: Path) -> None:
    # A real PKI, made with the CLI.
    _cli(tmp_path, "init-ca", "--name", "Revoke CA")
    _cli(tmp_path, "issue", "server", "localhost")
    _cli(tmp_path, "issue", "client", "web", "--spiffe-id", WEB)
    _cli(tmp_path, "issue", "client", "batch", "--spiffe-id", BATCH)
    pki = tmp_path / "pki"
    web = _deploy(pki, "web", tmp_path / "deployed")
    serial = _serial(web)

    served = start_servers({"pki": ["--pki", str(pki), "--name", "localhost"]})["pki"]
    loop = None
    try:
        assert "refusing revoked client certificates listed in" in served.wait_for("refusing revoked")
        target = f"localhost:{served.port}"
        # A long-lived client on one persistent connection, loaded before the revocation.
        loop = Loop(tmp_path, "--name", "web", "--server", target)
        (before,) = run_many(["greet", "--server", target, *web])
        assert before.code == 0 and before.stdout == "Hello world\n", before.text
        loop.wait_for("OK")

        _cli(tmp_path, "revoke", "web")

        # The next call: a new connection with the deployed copy, in words and --json; batch is untouched.
        human, as_json, other, by_name = run_many(
            ["greet", "--server", target, *web],
            ["greet", "--server", target, *web, "--json"],
            ["greet", "--server", target, "--name", "batch"],
            ["greet", "--server", target, "--name", "web"],  # its PKI files are archived now
            cwd=tmp_path,
        )
        assert human.code == 1 and "Traceback" not in human.text, human.text
        for fragment in (
            "UNAUTHENTICATED after",
            f"the server says this client's certificate (serial {serial}) is revoked",
            "crl.pem updated",
            "cannot be renewed",
            f"`grpcpki issue client web --spiffe-id {WEB}`",
            f"grpc said: client certificate serial {serial} ({WEB}) is revoked",
        ):
            assert fragment in human.text, f"{fragment!r} not in: {human.text}"
        call = as_json.json_lines()[0]
        assert as_json.code == 1 and call["status"] == "UNAUTHENTICATED" and call["kind"] == "client-cert-revoked", call
        assert serial in str(call["details"]) and serial in str(call["cause"])
        assert "grpcpki issue client web" in str(call["fix"])
        assert other.code == 0 and other.stdout == "Hello world\n", other.text
        assert by_name.code == 1 and f"its last one (serial {serial}) was revoked on" in by_name.text, by_name.text
        assert f"`grpcpki issue client web --spiffe-id {WEB}`" in by_name.text

        # The persistent connection is refused too: the check is per call, not per handshake.
        refused = loop.wait_for("UNAUTHENTICATED")
        assert refused["kind"] == "client-cert-revoked" and serial in str(refused["details"]), refused
        code, _ = loop.stop()
        assert code == 1, loop.lines

        # serve said it in plain words, and noticed the new CRL by itself.
        line = f"refused a revoked client certificate, serial {serial} is listed in {pki / 'crl.pem'}"
        log = served.wait_for(line)
        assert line in log and "`grpcpki issue client web`" in log, log
        assert "reloaded CRL" in log and "1 revoked certificate serial(s)" in log, log
        assert "Traceback" not in log

        # A freshly issued certificate for the same name works, on the same running server.
        _cli(tmp_path, "issue", "client", "web", "--spiffe-id", WEB)
        (fresh,) = run_many(["greet", "--server", target, "--name", "web"], cwd=tmp_path)
        assert fresh.code == 0 and fresh.stdout == "Hello world\n", fresh.text
        assert served.proc.poll() is None
    finally:
        if loop is not None and loop.proc.poll() is None:
            loop.proc.kill()
            loop.proc.wait()
        served.stop()


def _engine_pki(path: Path) -> Pki:
    pki = Pki.init(path, name="Files CA")
    pki.issue(Role.SERVER, "localhost")
    pki.issue(Role.CLIENT, "web", sans=[WEB])
    pki.issue(Role.CLIENT, "batch", sans=[BATCH])
    return pki


def _publish(crl: Path, data: bytes) -> None:
    tmp = crl.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, crl)


def test_explicit_files_with_crl_and_a_crl_damaged_while_serving(tmp_path: Path) -> None:
    pki = _engine_pki(tmp_path / "pki")
    out = tmp_path / "deployed"
    server = _deploy(pki.path, "localhost", out)
    web, batch = _deploy(pki.path, "web", out), _deploy(pki.path, "batch", out)
    revoke(pki, "batch")
    published = tmp_path / "published-crl.pem"  # the server's copy of the CRL, not the PKI's
    shutil.copy(pki.path / "crl.pem", published)

    served = start_servers({"files": [*server, "--crl", str(published)]})["files"]
    try:
        assert f"listed in {published} (1 revoked)" in served.wait_for("(1 revoked)")
        target = f"localhost:{served.port}"
        ok, refused = run_many(["greet", "--server", target, *web], ["greet", "--server", target, *batch, "--json"])
        assert ok.code == 0, ok.text
        call = refused.json_lines()[0]
        assert refused.code == 1 and call["kind"] == "client-cert-revoked" and _serial(batch) in str(call["details"])
        assert f"grpcpki issue client batch --spiffe-id {BATCH}" in str(call["fix"])

        # Damaged while serving: the last good CRL stays in force (batch refused, web served), said once.
        _publish(published, b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
        ok, refused, ok2 = run_many(
            ["greet", "--server", target, *web],
            ["greet", "--server", target, *batch],
            ["greet", "--server", target, *web],
        )
        assert ok.code == 0 and ok2.code == 0, ok.text + ok2.text
        assert refused.code == 1 and "is revoked" in refused.text, refused.text
        log = served.wait_for("still enforcing the previous CRL")
        assert f"CRL {published} changed but could not be read" in log, log
        assert log.count("still enforcing the previous CRL (1 revoked certificate serial(s))") == 1, log

        # Fixed, now listing web too: picked up on the next call, without a restart.
        revoke(pki, "web")
        _publish(published, (pki.path / "crl.pem").read_bytes())
        (now_refused,) = run_many(["greet", "--server", target, *web])
        assert now_refused.code == 1 and f"serial {_serial(web)}" in now_refused.text, now_refused.text
        assert "reloaded CRL" in served.wait_for("reloaded CRL")
    finally:
        served.stop()


def test_unusable_crl_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    pki = _engine_pki(tmp_path / "pki")
    server = _deploy(pki.path, "localhost", tmp_path / "deployed")
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("this is not a CRL\n")
    broken_pki = tmp_path / "broken"
    shutil.copytree(pki.path, broken_pki)
    (broken_pki / "crl.pem").write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    listen = ["serve", "--listen", "127.0.0.1:0"]
    explicit, missing, by_name, tls = run_many(
        [*listen, *server, "--crl", str(damaged)],
        [*listen, *server, "--crl", str(tmp_path / "nope.pem")],
        [*listen, "--pki", str(broken_pki), "--name", "localhost"],
        [*listen, *server, "--tls", "--crl", str(damaged)],
    )
    for run, words in (
        (explicit, f"{damaged} holds no PEM CRL"),
        (missing, "nope.pem does not exist"),
        (by_name, "damaged CRL"),
    ):
        assert run.code == 1 and "Traceback" not in run.text, run.text
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert words in run.text, run.text
    assert tls.code == 2 and "--crl checks client certificates, which --tls does not ask for" in tls.text, tls.text
