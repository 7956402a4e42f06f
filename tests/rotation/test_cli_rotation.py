"""`grpcpki renew`, `revoke` and `ca rotate` through the real entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rotation_helpers import make_pki, snapshot

from support import OPENSSL, Result, assert_clean_error, requires_openssl

Cli = Callable[..., Result]


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    make_pki(tmp_path)
    return tmp_path / "pki"


def _json(result: Result) -> dict:
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def test_rotation_runbook_end_to_end(cli: Cli, pki_dir: Path) -> None:
    first = _json(cli("renew", "--all", "--json"))
    assert first["renewed"] == 0 and first["skipped"] == 2

    forced = _json(cli("renew", "localhost", "--force", "--json"))
    (entry,) = forced["certificates"]
    assert entry["action"] == "renewed" and entry["reason"] == "forced"
    assert entry["old_serial"] != entry["new_serial"] and entry["not_after"].endswith("Z")

    begun = _json(cli("ca", "rotate", "begin", "--json"))
    assert begun["action"] == "started" and begun["root"]["subject"] == "CN=Rotation CA G2"
    assert len(begun["status"]["trust_bundle"]) == 2
    again = cli("ca", "rotate", "begin")
    assert again.code == 0 and "already in progress" in again.stderr

    status = _json(cli("ca", "rotate", "status", "--json"))
    assert status["phase"] == "overlap" and status["safe_to_finish"] is False
    assert sorted(leaf["name"] for leaf in status["old_leaves"]) == ["localhost", "web"]

    refused = cli("ca", "rotate", "finish")
    assert_clean_error(refused, "still chain to the old CA", "renew --all")

    renewed = _json(cli("renew", "--all", "--json"))
    assert renewed["renewed"] == 2
    assert all("old CA" in c["reason"] for c in renewed["certificates"])
    assert _json(cli("renew", "--all", "--json"))["renewed"] == 0  # second run: nothing to do

    done = _json(cli("ca", "rotate", "finish", "--json"))
    assert done["action"] == "finished" and [r["subject"] for r in done["dropped_roots"]] == ["CN=Rotation CA"]
    assert _json(cli("ca", "rotate", "status", "--json"))["phase"] == "idle"
    text = cli("ca", "rotate", "status")
    assert text.code == 0 and "phase:            idle" in text.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(("renew",), "name the certificates to renew, or pass --all", id="renew-nothing"),
        pytest.param(("renew", "web", "--all"), "NAMEs or --all, not both", id="renew-both"),
        pytest.param(("renew", "--all", "--within", "soon"), "invalid duration", id="bad-within"),
        pytest.param(("renew", "--all", "--watch", "1h", "--force"), "--force with --watch", id="watch-force"),
        pytest.param(("ca", "rotate", "begin", "--intermediate-only", "--cross-sign"), "--cross-sign", id="begin-flags"),
        pytest.param(("revoke", "web", "--reason", "because"), "--reason", id="bad-reason"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, pki_dir: Path, args: tuple[str, ...], fragment: str) -> None:
    before = snapshot(pki_dir)
    result = cli(*args)
    assert_clean_error(result, fragment, code=2)
    assert snapshot(pki_dir) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(("renew", "nope"), "no active certificate named 'nope'", id="renew-unknown"),
        pytest.param(("revoke", "nope"), "no active certificate named 'nope'", id="revoke-unknown"),
        pytest.param(("ca", "rotate", "begin", "--intermediate-only"), "needs a PKI with an intermediate", id="no-inter"),
    ],
)
def test_engine_errors_are_one_line(cli: Cli, pki_dir: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_clean_error(cli(*args), fragment)


def test_missing_pki_is_one_line(cli: Cli) -> None:
    assert_clean_error(cli("renew", "--all"), "no CA in")


def test_dry_run_writes_nothing(cli: Cli, pki_dir: Path) -> None:
    before = snapshot(pki_dir)
    result = _json(cli("renew", "--all", "--force", "--dry-run", "--json"))
    assert {c["action"] for c in result["certificates"]} == {"would-renew"}
    assert snapshot(pki_dir) == before


def test_renew_failure_exits_1(cli: Cli, pki_dir: Path) -> None:
    (pki_dir / "certs" / "web" / "key.pem").unlink()
    result = cli("renew", "--all", "--force", "--keep-key")
    assert result.code == 1 and "Traceback" not in result.output
    assert "renewed server localhost" in result.stderr and "could not renew web" in result.stderr


def test_encrypted_ca_needs_the_passphrase(tmp_path: Path, cli: Cli) -> None:
    make_pki(tmp_path, passphrase=b"s3cret")
    assert_clean_error(cli("ca", "rotate", "begin"), "passphrase")
    ok = cli("ca", "rotate", "begin", env={"GRPCPKI_PASSPHRASE": "s3cret"})
    assert ok.code == 0, ok.output
    assert b"ENCRYPTED" in (tmp_path / "pki" / "ca" / "g2" / "root.key").read_bytes()


@requires_openssl
def test_revoke_and_openssl_crl_check(cli: Cli, pki_dir: Path, tmp_path: Path) -> None:
    web = tmp_path / "web.pem"
    web.write_bytes((pki_dir / "certs" / "web" / "cert.pem").read_bytes())
    result = _json(cli("revoke", "web", "--reason", "keyCompromise", "--json"))
    assert result["action"] == "revoked" and result["reason"] == "keyCompromise"
    crl = pki_dir / "crl.pem"
    verify = [OPENSSL, "verify", "-crl_check", "-CAfile", str(pki_dir / "ca.crt"), "-CRLfile", str(crl)]
    rejected = subprocess.run([*verify, str(web)], capture_output=True, text=True)  # type: ignore[list-item]
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr
    accepted = subprocess.run([*verify, str(pki_dir / "certs" / "localhost" / "cert.pem")], capture_output=True, text=True)  # type: ignore[list-item]
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    again = cli("revoke", "web")
    assert again.code == 0 and "already revoked" in again.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_watch_runs_again_every_interval(pki_dir: Path, tmp_path: Path, stop: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "--pki", str(pki_dir), "renew", "--all", "--watch", "1s", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]  # JSON Lines, one per pass
        assert [doc["skipped"] for doc in lines] == [2, 2]
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=10)
    assert proc.returncode == 0  # the pass in hand finished, then a clean stop
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
