"""Races through the real entry point: writers serialise, the losers refuse cleanly, nothing is lost.

The racing commands are real grpcpki processes; the certificates a race starts from are issued
in this process through the engine (one batch), since how they were made is not under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from store_support import assert_store_consistent

from grpcpki.engine import Pki, Role
from grpcpki.engine.pki import LeafRequest
from support import cli_env, run_grpcpki

ROUNDS = 3


def start(pki: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "--pki", str(pki), *args],
        cwd=pki.parent, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and "unexpected error" not in err, err
        results.append((proc.returncode, out, err))
    return results


def issue_in_process(pki: Path, role: Role, names: list[str]) -> None:
    store = Pki.open(pki)
    try:
        store.issue_many([LeafRequest(role, name) for name in names])
    finally:
        store.inventory.close()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    path = tmp_path / "pki"
    assert run_grpcpki("--pki", str(path), "init-ca").code == 0
    return path


def test_same_name_issues_end_in_one_success_and_clean_refusals(pki: Path) -> None:
    for round_ in range(ROUNDS):
        results = finish([start(pki, "issue", "server", f"same{round_}") for _ in range(6)])
        codes = sorted(code for code, _out, _err in results)
        assert codes == [0, 1, 1, 1, 1, 1], results
        for code, _out, err in results:
            if code:
                assert err.strip().splitlines()[-1].startswith(f"error: server certificate 'same{round_}' already exists")
    assert assert_store_consistent(pki)["active"] == ROUNDS


def test_different_names_all_succeed_alongside_renewals(pki: Path) -> None:
    assert run_grpcpki("--pki", str(pki), "issue", "server", "base").code == 0
    for round_ in range(ROUNDS):
        procs = [start(pki, "issue", "client", f"c{round_}-{i}") for i in range(4)]
        procs += [start(pki, "renew", "--all", "--force") for _ in range(2)]
        assert [code for code, _o, _e in finish(procs)] == [0] * 6
    assert assert_store_consistent(pki)["active"] == 1 + 4 * ROUNDS


def test_no_revocation_is_lost_to_a_concurrent_renew(pki: Path) -> None:
    for round_ in range(ROUNDS):
        names = [f"r{round_}-{i}" for i in range(5)]
        issue_in_process(pki, Role.CLIENT, names)
        procs = [start(pki, "renew", "--all", "--force"), start(pki, "renew", "--all", "--force")]
        procs += [start(pki, "revoke", name, "--json") for name in names]
        results = finish(procs)
        assert all(code == 0 for code, _o, _e in results), results
        revoked = {json.loads(out)["serial"] for _code, out, _err in results[2:]}
        listing = run_grpcpki("--pki", str(pki), "list", "--all", "--json")
        rows = json.loads(listing.stdout)
        for name in names:
            assert not [r for r in rows if r["name"] == name and r["status"] == "active"], name
        by_serial = {r["serial"]: r for r in rows}
        # Each serial a revoke reported is revoked in the inventory (and, below, listed in crl.pem).
        assert all(by_serial[serial]["status"] == "revoked" for serial in revoked)
    assert_store_consistent(pki)


def test_renew_and_ca_rotation_serialise(pki: Path) -> None:
    issue_in_process(pki, Role.SERVER, [f"s{i}" for i in range(3)])
    procs = [start(pki, "renew", "--all", "--force"), start(pki, "ca", "rotate", "begin"), start(pki, "renew", "--all")]
    assert [code for code, _o, _e in finish(procs)] == [0, 0, 0]
    assert_store_consistent(pki)
    # Whatever the order was, one more renew moves every leaf to the new CA and finish succeeds.
    assert run_grpcpki("--pki", str(pki), "renew", "--all").code == 0
    assert run_grpcpki("--pki", str(pki), "ca", "rotate", "finish").code == 0
    assert_store_consistent(pki)


def test_racing_init_ca_makes_one_ca_and_forced_ones_keep_every_old_one(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    results = finish([start(pki, "init-ca", "--name", f"CA {i}") for i in range(4)])
    assert sorted(code for code, _o, _e in results) == [0, 1, 1, 1], results
    for code, _out, err in results:
        if code:
            assert err.strip().splitlines()[-1].startswith("error: a CA already exists")
    assert_store_consistent(pki)
    assert run_grpcpki("--pki", str(pki), "issue", "server", "old").code == 0
    forced = finish(
        [start(pki, "init-ca", "--force", "--name", f"New {i}") for i in range(2)]
        + [start(pki, "issue", "server", f"during-{i}") for i in range(2)]
    )
    assert [code for code, _o, _e in forced] == [0, 0, 0, 0], [err for _c, _o, err in forced]
    assert_store_consistent(pki)
    backups = sorted(tmp_path.glob("pki.replaced-*"))
    assert len(backups) == 2  # the original and the first replacement, each whole
    for backup in backups:
        assert_store_consistent(backup)
    assert any((b / "certs" / "old" / "cert.pem").is_file() for b in backups)
