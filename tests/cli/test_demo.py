"""`grpcpki demo`: the README's first command, end to end through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

from support import assert_clean_error, run_grpcpki, tree


def test_demo_proves_mutual_tls_and_cleans_up(tmp_path: Path) -> None:
    result = run_grpcpki("demo", cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
    assert result.code == 0, result.output
    assert "mutual TLS works end to end" in result.stdout
    assert "spiffe://example.org/ns/demo/sa/greeter-client" in result.stdout
    assert "refused" in result.stdout
    assert "Traceback" not in result.output
    assert tree(tmp_path) == []  # the temporary PKI is gone


def test_demo_json_reports_what_was_proven(tmp_path: Path) -> None:
    result = run_grpcpki("demo", "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    steps = {s["step"]: s for s in data["steps"]}
    assert steps["greet"]["reply"] == "Hello grpcpki demo"
    assert steps["greet"]["identity_seen_by_server"] == "spiffe://example.org/ns/demo/sa/greeter-client"
    assert steps["greet-without-certificate"]["refused"] is True
    assert steps["issue-server"]["sans"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]


def test_demo_into_a_named_pki_keeps_it_and_refuses_to_clobber(tmp_path: Path) -> None:
    pki = tmp_path / "demo-pki"
    first = run_grpcpki("demo", "--pki", str(pki), cwd=tmp_path)
    assert first.code == 0, first.output
    assert "certs/localhost/chain.pem" in tree(pki)
    listing = run_grpcpki("--pki", str(pki), "list", "--json", cwd=tmp_path)
    assert {r["name"] for r in json.loads(listing.stdout) if r["kind"] in ("server", "client")} == {
        "localhost", "greeter-client"
    }
    assert_clean_error(run_grpcpki("demo", "--pki", str(pki), cwd=tmp_path), "a CA already exists")


def test_demo_rotate_keeps_calls_flowing_while_everything_is_replaced(tmp_path: Path) -> None:
    result = run_grpcpki("demo", "--rotate", "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    data = json.loads(result.stdout)
    rotation = {s["step"]: s for s in data["steps"]}["rotation"]
    assert rotation["failed_calls"] == 0, rotation["last_failure"]
    assert rotation["successful_calls"] >= 25  # 5 fresh-connection calls after each of 5 steps
    assert rotation["served_new_certificate_each_step"] is True
    assert rotation["ca_generation"] == 2 and rotation["cas_in_trust_bundle"] == 1
    assert len(set(rotation["served_serials"])) == 2  # the first server renewal, then the new-CA one
