"""The two plans of `grpcpki apply` (issue 10): the full plan (Pki, Records, under the lock) and
the no-op path (grpcpki.engine.applyplan: the inventory read with the standard library's sqlite3,
no cryptography, no SQLAlchemy) reach the same verdict on every case that matters, and the fast
one only ever says "nothing to change"."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from grpcpki.engine import Pki, Role
from grpcpki.engine.applyplan import plan_if_unchanged
from grpcpki.engine.manifest import Manifest, Plan, apply_plan, parse_manifest, plan
from support import run_grpcpki

NOW = datetime.now(UTC)

BASE = """
[ca]
name = "Plan CA"

[defaults]
dns = ["{name}.internal"]

[[service]]
name = "orders"
ip = ["10.0.0.7"]

[[service]]
name = "orders"
kind = "client"
spiffe_id = "spiffe://example.org/orders"

[[service]]
name = "web"
kind = "client"
also_server = true

[[service]]
name = "edge"
key_type = "ed25519"

[[service]]
name = "w{i}"
count = 3
spiffe_id = "spiffe://example.org/w/{i}"
"""


def manifest(text: str = BASE) -> Manifest:
    return parse_manifest(textwrap.dedent(text))


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BASE manifest applied, plus one certificate the manifest does not name."""
    path = tmp_path_factory.mktemp("plans") / "pki"
    pki = Pki.init(path, name="Plan CA")
    apply_plan(pki, plan(pki, manifest()).changes)
    pki.issue(Role.SERVER, "legacy")
    pki.inventory.close()
    return path


def plans(path: Path, wanted: Manifest, now: datetime = NOW) -> tuple[Plan, Plan | None]:
    pki = Pki.open(path)
    try:
        full = plan(pki, wanted, now=now)
    finally:
        pki.inventory.close()
    return full, plan_if_unchanged(path, wanted, now=now)


def assert_same_verdict(full: Plan, fast: Plan | None) -> None:
    if full.changes:
        assert fast is None, [c.to_dict() for c in full.changes]
    else:
        assert fast is not None, "nothing to change, but the no-op path did not say so"
        assert fast.to_dict() == full.to_dict()


# (manifest text, the moment planned at, the action the full plan finds; None: nothing to change)
CASES = {
    "nothing to do": (BASE, NOW, None),
    "three services fewer": (BASE.split('[[service]]\nname = "w{i}"')[0], NOW, None),
    "past two thirds of its lifetime": (BASE, NOW + timedelta(days=61), "renew"),
    "expired": (BASE, NOW + timedelta(days=91), "renew"),
    "renew_within": (BASE.replace("[defaults]", '[defaults]\nrenew_within = "91d"'), NOW, "renew"),
    "names drifted": (BASE.replace("10.0.0.7", "10.0.0.8"), NOW, "reissue"),
    "a name added by the defaults": (BASE.replace('dns = ["{name}.internal"]', 'dns = ["{name}.internal", "{name}.svc"]'), NOW,
                                     "reissue"),
    "usages drifted": (BASE.replace("also_server = true", "also_server = false"), NOW, "reissue"),
    "key type drifted": (BASE.replace('key_type = "ed25519"', 'key_type = "ecdsa-p256"'), NOW, "reissue"),
    "SPIFFE ID drifted": (BASE.replace("spiffe://example.org/orders", "spiffe://example.org/ns/orders"), NOW, "reissue"),
    "kind moved": (BASE.replace('name = "edge"', 'name = "edge"\nkind = "client"'), NOW, "reissue"),
    "one missing": (BASE + '\n[[service]]\nname = "new"\n', NOW, "create"),
    "the CA's name differs": (BASE.replace('name = "Plan CA"', 'name = "Other CA"'), NOW, None),
    "the CA's key type differs": (BASE.replace('name = "Plan CA"', 'name = "Plan CA"\nkey_type = "rsa-2048"'), NOW, None),
    "no [ca] table": (BASE.replace('[ca]\nname = "Plan CA"\n', ""), NOW, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_plans_reach_the_same_verdict(pki_dir: Path, case: str) -> None:
    text, now, action = CASES[case]
    full, fast = plans(pki_dir, manifest(text), now)
    assert {c.action for c in full.changes} == ({action} if action else set())
    assert_same_verdict(full, fast)
    if fast is not None:
        assert fast.unmanaged == full.unmanaged >= 1  # "legacy"
        if "CA" in case and "differs" in case:
            assert len(fast.notes) == 1 and "apply does not replace a CA" in fast.notes[0]


def changed_copy(pki_dir: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    copy = tmp_path / "pki"
    shutil.copytree(pki_dir, copy)
    change(copy)
    return copy


def test_a_rotated_ca_renews_everything_in_both_plans(pki_dir: Path, tmp_path: Path) -> None:
    from grpcpki.engine.rotation import begin_rotation

    def rotate(path: Path) -> None:
        pki = Pki.open(path)
        begin_rotation(pki)
        pki.inventory.close()

    full, fast = plans(changed_copy(pki_dir, tmp_path, rotate), manifest())
    assert {c.action for c in full.changes} == {"renew"} and "CA generation 1" in full.changes[0].reason
    assert_same_verdict(full, fast)


def test_a_deleted_certificate_file_is_judged_alike(pki_dir: Path, tmp_path: Path) -> None:
    """Planning reads the inventory, not the files (`grpcpki doctor --store` checks those): both
    plans agree, whatever the file system says."""
    copy = changed_copy(pki_dir, tmp_path, lambda path: None)
    pki = Pki.open(copy)
    record = pki.find("edge")
    pki.inventory.close()
    assert record.cert_path is not None
    record.cert_path.unlink()
    assert_same_verdict(*plans(copy, manifest()))


def test_what_the_reader_must_not_read_goes_to_the_full_plan(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = changed_copy(pki_dir, tmp_path, lambda path: None)
    wanted = manifest()
    assert plan_if_unchanged(copy, wanted) is not None
    monkeypatch.setenv("GRPCPKI_DB", "postgresql://nobody@127.0.0.1:1/none")
    assert plan_if_unchanged(copy, wanted) is None  # a shared inventory (--db)
    monkeypatch.delenv("GRPCPKI_DB")
    (copy / ".journal" / "pending").mkdir(parents=True)
    assert plan_if_unchanged(copy, wanted) is None  # a writer died mid-change: recovery first
    (copy / ".journal" / "pending").rmdir()
    (copy / "ca.crt").unlink()
    assert plan_if_unchanged(copy, wanted) is None  # no CA: the full path's one-line error
    assert plan_if_unchanged(tmp_path / "nowhere", wanted) is None


def test_a_no_op_apply_still_warns_about_an_exposed_ca_key(tmp_path: Path) -> None:
    """The warnings `app.pki()` prints on the full path are printed on the no-op path too."""
    (tmp_path / "grpcpki.toml").write_text('[ca]\nname = "Warn CA"\n[[service]]\nname = "api"\n')
    first = run_grpcpki("--pki", str(tmp_path / "pki"), "apply", cwd=tmp_path)
    assert first.code == 0, first.output
    (tmp_path / "pki/ca/g1/root.key").chmod(0o644)
    second = run_grpcpki("--pki", str(tmp_path / "pki"), "apply", cwd=tmp_path)
    assert second.code == 0, second.output
    assert "warning: the CA key" in second.stderr and "chmod 600" in second.stderr
    assert second.stderr.splitlines()[-1] == "nothing to change: 1 services in grpcpki.toml are up to date"
