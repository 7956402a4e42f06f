"""Signing and staging in worker processes (`--jobs`, engine/workers.py): the speed must not
cost any of the store's safety.

Every test runs the real `grpcpki` entry point with GRPCPKI_TEST_POOL_MIN=2, so a batch of a
few certificates goes through the pool that normally starts at 128 (the pool is skipped in
pytest's own process anyway: xdist runs threads there, and the pool never forks beside a thread).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from store_support import assert_store_consistent
from test_crash import SIGKILLED, recover_by_opening

from support import Result, assert_clean_error, run_grpcpki

POOL = {"GRPCPKI_TEST_POOL_MIN": "2"}
MANIFEST = """
[ca]
name = "Pool CA"
intermediate = true

[defaults]
spiffe_id = "spiffe://example.org/{name}"

[[service]]
name = "svc-{i:02}"
count = 9
dns = ["{name}.internal"]

[[service]]
name = "both"
also_client = true

[[service]]
name = "both"
kind = "client"

[[service]]
name = "edge"
ip = ["10.1.0.1"]
key_type = "rsa-2048"
"""
LEAVES = 12


def grpcpki(pki: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_grpcpki("--pki", str(pki), *args, cwd=pki.parent, env={**POOL, **(env or {})})


def rows(pki: Path) -> list[tuple[str, str, str, str, str | None]]:
    with closing(sqlite3.connect(f"file:{pki / 'inventory.db'}?mode=ro", uri=True)) as db:
        return sorted(db.execute(
            "SELECT name, kind, status, serial, key_path FROM certificates WHERE kind IN ('server', 'client')"
        ).fetchall())


def snapshot(pki: Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file aside), to prove a failed pass changed nothing."""
    return {str(p.relative_to(pki)): p.read_bytes() for p in sorted(pki.rglob("*"))
            if p.is_file() and p.name != ".lock" and not p.name.startswith("inventory.db")}


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PKI made by a pooled `apply` (creates, three workers), with an intermediate CA."""
    work = tmp_path_factory.mktemp("pool")
    (work / "grpcpki.toml").write_text(textwrap.dedent(MANIFEST))
    pki = work / "pki"
    result = grpcpki(pki, "apply", "--jobs", "3")
    assert result.code == 0, result.output
    return pki


def copy_of(template: Path, tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    shutil.copytree(template, pki)
    return pki


def assert_leaves_sound(pki: Path) -> None:
    """Valid chains (openssl too), 0600 keys, unique serials, rows matching files."""
    assert_store_consistent(pki)  # rows <-> files, key <-> certificate, chain verifies, archives
    table = rows(pki)
    serials = [serial for *_rest, serial, _key in table]
    assert len(serials) == len(set(serials)), "a serial was issued twice"
    active = [r for r in table if r[2] == "active"]
    assert len(active) == LEAVES
    openssl = shutil.which("openssl")
    for _name, kind, _status, _serial, key_path in active:
        key = pki / str(key_path)
        assert key.stat().st_mode & 0o777 == 0o600, key
        if openssl:
            chain = key.parent / "chain.pem"
            purpose = "sslserver" if kind == "server" else "sslclient"
            check = subprocess.run(
                [openssl, "verify", "-purpose", purpose, "-CAfile", str(pki / "ca.crt"), "-untrusted", str(chain),
                 str(chain)], capture_output=True, text=True,
            )
            assert check.returncode == 0, check.stdout + check.stderr


def test_a_pooled_apply_then_a_pooled_renew_give_sound_certificates(applied: Path, tmp_path: Path) -> None:
    assert_leaves_sound(applied)
    pki = copy_of(applied, tmp_path)
    before = {(name, kind): serial for name, kind, status, serial, _key in rows(pki) if status == "active"}
    result = grpcpki(pki, "renew", "--all", "--force", "--jobs", "2")
    assert result.code == 0, result.output
    assert result.stderr.count("renewed ") == LEAVES
    assert_leaves_sound(pki)
    after = rows(pki)
    superseded = {(name, kind): serial for name, kind, status, serial, _key in after if status == "superseded"}
    assert superseded == before  # every old certificate superseded, and archived (assert_store_consistent)
    for (name, _kind), serial in before.items():
        assert (pki / "archive" / name / serial / "cert.pem").is_file()
        assert (pki / "archive" / name / serial / "key.pem").stat().st_mode & 0o777 == 0o600
    # A second apply finds nothing to do: the rows the pool wrote are what the manifest says.
    again = run_grpcpki("--pki", str(pki), "apply", cwd=applied.parent, env=POOL)
    assert again.code == 0 and "renewed" not in again.stderr and "created" not in again.stderr, again.output


def test_a_killed_worker_fails_the_pass_with_one_error_and_changes_nothing(applied: Path, tmp_path: Path) -> None:
    pki = copy_of(applied, tmp_path)
    files, table = snapshot(pki), rows(pki)
    # The worker kills itself after staging its second certificate: temp files and archive links exist.
    result = grpcpki(pki, "renew", "--all", "--force", "--jobs", "2", env={"GRPCPKI_TEST_WORKER_CRASH": "2"})
    assert_clean_error(result, "signing worker", "killed by signal 9")
    assert rows(pki) == table
    assert snapshot(pki) == files  # no temp file, no archive folder, nothing half-written
    assert_store_consistent(pki)
    # And the next pass works.
    assert grpcpki(pki, "renew", "--all", "--force", "--jobs", "2").code == 0
    assert_leaves_sound(pki)


def test_an_unreadable_ca_key_fails_before_any_worker_starts(applied: Path, tmp_path: Path) -> None:
    pki = copy_of(applied, tmp_path)
    (pki / "ca" / "g1" / "intermediate.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    files, table = snapshot(pki), rows(pki)
    result = grpcpki(pki, "renew", "--all", "--force", "--jobs", "2")
    assert_clean_error(result, "CA key")
    assert rows(pki) == table and snapshot(pki) == files


def test_sigkill_of_the_main_process_mid_pool_is_recovered_by_the_next_command(applied: Path, tmp_path: Path) -> None:
    """The main process dies while workers run, or just after: the workers die with it
    (PR_SET_PDEATHSIG), and the next command rolls the journal back."""
    table = rows(applied)
    wanted = {"pool running", "pool done", "sync staged files"}
    for crash_at in range(1, 12):
        pki = copy_of(applied, tmp_path / str(crash_at))
        result = grpcpki(pki, "renew", "--all", "--force", "--jobs", "2", env={"GRPCPKI_TEST_CRASH_AT": str(crash_at)})
        assert result.code == SIGKILLED, result.output
        point = result.stderr.strip().splitlines()[-1].partition(": ")[2]
        if point not in wanted:
            continue
        wanted.remove(point)
        assert list(pki.rglob("*.tmp")), f"{point}: the crash came before any file was staged"
        # No worker outlives the main process, so nothing is written behind the recovery.
        assert _workers_gone(pki), f"{point}: a worker outlived the main process"
        recover_by_opening(pki)
        assert rows(pki) == table, point  # rolled back: the commit point was not reached
        assert_store_consistent(pki)
        if not wanted:
            break
    assert not wanted, f"crash points never reached: {wanted}"


def _workers_gone(pki: Path) -> bool:
    """True once no process runs with PKI on its command line (SIGKILL takes a moment to land)."""
    deadline = time.monotonic() + 2
    while any(str(pki) in line for line in _processes()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _processes() -> list[str]:
    """Command lines of this machine's processes (the workers are forks: they keep --pki PATH)."""
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return lines


def test_a_pooled_renew_remakes_a_leaf_folder_removed_by_hand(applied: Path, tmp_path: Path) -> None:
    """As the in-process path does: a missing certs/NAME/ is made again, not a failed pass."""
    pki = copy_of(applied, tmp_path)
    shutil.rmtree(pki / "certs" / "svc-01")
    result = grpcpki(pki, "renew", "--all", "--force", "--jobs", "2")
    assert result.code == 0, result.output
    assert (pki / "certs" / "svc-01" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert_leaves_sound(pki)


def test_the_pool_flushes_while_workers_run_and_leaves_no_process_or_thread_behind(tmp_path: Path) -> None:
    """run_pool's flush (the batch's early syncfs) runs in its own process while the workers work,
    and nothing of it is left when run_pool returns: no child, no thread (the next pool's fork
    must find none: workers.py). In a fresh interpreter: pytest's own process has threads, and the
    pool never forks beside one."""
    script = textwrap.dedent("""
        import os, sys, time
        from grpcpki.engine import workers
        workers.FLUSH_SECONDS = 0.02
        log = sys.argv[1]
        results = {}
        def task(start, end):
            time.sleep(0.05)
            return [i * i for i in range(start, end)]
        def flush():
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        workers.run_pool(task, 300, workers=2, on_result=results.__setitem__, flush=flush)
        assert results == {i: i * i for i in range(300)}, results
        pids = set(open(log).read().split())
        assert pids and str(os.getpid()) not in pids, pids  # flushed, and never by this process
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        else:
            raise AssertionError("a child of the pool is still there")
        assert len(os.listdir("/proc/self/task")) == 1, "a thread outlived the pool"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "flushes")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
