"""SIGKILL at every step of every state-changing command, then one ordinary command: the store
must be consistent, and equal to the state either before or after the killed command.

GRPCPKI_TEST_CRASH_AT=N makes grpcpki SIGKILL itself at the Nth step of the store protocol
(journal write, each staged file, sync, commit, each rename, journal drop; the directory swap
of init-ca --force). Each scenario runs N = 1, 2, ... until the command completes untouched, so
every crash point the command passes through is exercised, whatever their number.

The crash is a real grpcpki process killing itself; the recovery that follows runs in this
process through `Pki.open`, the same call with which every grpcpki command (`list` included)
opens the store and applies the recovery rule: a second interpreter per crash point would only
add its start-up to the suite's time.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from store_support import assert_store_consistent

from grpcpki.engine.errors import NoCAError
from grpcpki.engine.pki import Pki
from support import Result, run_grpcpki

SIGKILLED = -9
_points_run: Counter[str] = Counter()


def grpcpki(pki: Path, *args: str, crash_at: int | None = None) -> Result:
    env = {"GRPCPKI_TEST_CRASH_AT": str(crash_at)} if crash_at else {}
    return run_grpcpki("--pki", str(pki), *args, cwd=pki.parent, env=env)


def recover_by_opening(pki: Path) -> None:
    """What a reader such as `grpcpki list` does first: open the store, which recovers it."""
    store = Pki.open(pki)
    try:
        list(store.records())
    finally:
        store.inventory.close()


def _build(root: Path, *steps: tuple[str, ...]) -> Path:
    pki = root / "pki"
    for args in steps:
        result = grpcpki(pki, *args)
        assert result.code == 0, (args, result.output)
    return pki


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stores to copy before each kill: a working one, and one in a rotation's overlap."""
    steady = _build(
        tmp_path_factory.mktemp("steady"),
        ("init-ca", "--intermediate"),
        ("issue", "server", "a"),
        ("issue", "server", "b", "--dns", "b.internal"),
        ("issue", "client", "c", "--spiffe-id", "spiffe://example.org/c"),
        ("issue", "client", "r"),
        ("revoke", "r"),
    )
    overlap_root = tmp_path_factory.mktemp("overlap")
    overlap = overlap_root / "pki"
    shutil.copytree(steady, overlap)
    for args in (("ca", "rotate", "begin", "--cross-sign"), ("renew", "a")):
        result = grpcpki(overlap, *args)
        assert result.code == 0, (args, result.output)
    return {"steady": steady, "overlap": overlap}


def _state(pki: Path) -> tuple[Counter[tuple[str, str, str]], str | None, str | None]:
    """What a command changes, without serials: rows by (name, kind, status), generation, phase."""
    with closing(sqlite3.connect(f"file:{pki / 'inventory.db'}?mode=ro", uri=True)) as db:
        rows = Counter(db.execute("SELECT name, kind, status FROM certificates").fetchall())
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('ca_generation', 'rotation')").fetchall())
    return rows, meta.get("ca_generation"), meta.get("rotation")


def _root_fingerprint(pki: Path) -> bytes:
    return (pki / "ca" / "g1" / "root.crt").read_bytes()


SCENARIOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "issue": ("steady", ("issue", "server", "new", "--dns", "new.internal")),
    "issue-replace": ("steady", ("issue", "server", "b", "--replace", "--dns", "other.internal")),
    "renew-all": ("steady", ("renew", "--all", "--force")),
    "revoke": ("steady", ("revoke", "b", "--reason", "keyCompromise")),
    "rotate-begin": ("steady", ("ca", "rotate", "begin", "--cross-sign")),
    "rotate-finish": ("overlap", ("ca", "rotate", "finish", "--force")),
    "init-ca-force": ("steady", ("init-ca", "--force", "--name", "Replacement CA")),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sigkill_at_every_point_then_one_command_leaves_the_store_consistent(
    scenario: str, templates: dict[str, Path], tmp_path: Path
) -> None:
    template_name, args = SCENARIOS[scenario]
    template = templates[template_name]
    before = _state(template)
    old_root = _root_fingerprint(template)
    after: tuple[Counter[tuple[str, str, str]], str | None, str | None] | None = None
    outcomes: list[tuple[str, tuple[Counter[tuple[str, str, str]], str | None, str | None]]] = []
    for point in range(1, 200):
        work = tmp_path / f"p{point}"
        pki = work / "pki"
        shutil.copytree(template, pki)
        result = grpcpki(pki, *args, crash_at=point)
        if result.code != SIGKILLED:
            assert result.code == 0, result.output
            after = _state(pki)
            assert_store_consistent(pki)
            break
        label = result.stderr.strip().splitlines()[-1]
        # One ordinary reader runs the recovery rule.
        recover_by_opening(pki)
        try:
            assert_store_consistent(pki)
        except AssertionError as exc:
            raise AssertionError(f"after {label}: {exc}") from None
        outcomes.append((label, _state(pki)))
        if scenario == "init-ca-force":
            backups = list(work.glob("pki.replaced-*"))
            # The old CA is never lost: still in place, or kept whole as the backup.
            if _root_fingerprint(pki) == old_root:
                assert not backups, label
            else:
                assert len(backups) == 1, label
                assert _root_fingerprint(backups[0]) == old_root
                assert_store_consistent(backups[0])
        shutil.rmtree(work)
    else:
        pytest.fail("the command never completed")
    assert after is not None
    assert len(outcomes) >= 8, outcomes  # the hook really reached the protocol's steps
    _points_run[scenario] = len(outcomes)
    # Each crash left exactly the state before or the state after: nothing in between.
    for label, state in outcomes:
        assert state in (before, after), f"after {label}: {state} is neither {before} nor {after}"
    assert any(state == after for _label, state in outcomes), "no crash point came after the commit"
    print(f"{scenario}: {len(outcomes)} crash points, each recovered to before or after")


def test_a_first_init_ca_killed_anywhere_leaves_nothing_half_made(tmp_path: Path) -> None:
    points = 0
    for point in range(1, 100):
        pki = tmp_path / f"p{point}" / "pki"
        pki.parent.mkdir()
        result = grpcpki(pki, "init-ca", "--intermediate", crash_at=point)
        if result.code != SIGKILLED:
            assert result.code == 0, result.output
            break
        points += 1
        try:
            recover_by_opening(pki)
        except NoCAError:  # killed before the commit point: nothing of a CA is left
            leftovers = [p.name for p in pki.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
            assert not leftovers, leftovers
            # ... and init-ca simply works now.
            assert grpcpki(pki, "init-ca").code == 0
            assert_store_consistent(pki)
        else:  # killed after the commit point: the reader finished it
            assert_store_consistent(pki)
    assert points >= 8
    print(f"init-ca: {points} crash points")


def test_a_swap_by_two_renames_interrupted_between_them_is_finished(tmp_path: Path) -> None:
    """Where RENAME_EXCHANGE is missing, init-ca --force renames old -> backup, then new -> PKI.
    Killed between the two, no PKI exists under its name; the next command puts the new one there."""
    (tmp_path / "w").mkdir()
    pki = _build(tmp_path / "w", ("init-ca",), ("issue", "server", "a"))
    old_root = _root_fingerprint(pki)
    for point in range(1, 60):
        result = grpcpki(pki, "init-ca", "--force", "--name", "New CA", crash_at=point)
        assert result.code == SIGKILLED, "never reached the swap"
        if result.stderr.strip().endswith("before swap"):
            break
        # (the next init-ca --force rolls this attempt back first, under the lock)
    # The new PKI is complete under its staging name; do the fallback's first rename, then "crash".
    journal = json.loads(next((pki / ".journal").glob("*.json")).read_text())
    backup = pki.with_name(journal["backup"])
    pki.rename(backup)
    listing = grpcpki(pki, "list")
    assert listing.code == 0, listing.output
    assert "New CA" in listing.stdout
    assert_store_consistent(pki)
    assert_store_consistent(backup)
    assert _root_fingerprint(backup) == old_root
    assert not list(pki.parent.glob(".pki.new-*"))
