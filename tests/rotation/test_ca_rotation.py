"""CA rotation phases in the engine: bundle contents, chains, refusal, crash-resume, cross-signing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rotation_helpers import certs_in, make_pki, snapshot, subjects

from grpcpki.engine import PassphraseError, Pki, Role, RotationError, verify_chain
from grpcpki.engine import rotation as rotation_module
from grpcpki.engine.keys import is_encrypted_pem
from grpcpki.engine.rotation import (
    begin_rotation,
    finish_rotation,
    renew,
    rotation_state,
    rotation_status,
)


def _verifies(pki: Pki, name: str, trust: bytes | None = None) -> bool:
    record = pki.find(name)
    role = Role(record.kind)
    return verify_chain(
        record.chain_path.read_bytes(), trust or pki.trust_bundle_path.read_bytes(), role,  # type: ignore[union-attr]
    ).ok


@pytest.mark.parametrize("intermediate", [False, True], ids=["root-only", "with-intermediate"])
def test_full_rotation_phases(tmp_path: Path, intermediate: bool) -> None:
    pki = make_pki(tmp_path, intermediate=intermediate)
    old_root = (pki.ca_dir(1) / "root.crt").read_bytes()

    result = begin_rotation(pki)
    assert result.action == "started"
    assert pki.generation == 2
    assert result.root.subject == "CN=Rotation CA G2"
    if intermediate:
        assert result.intermediate is not None and result.intermediate.subject == "CN=Rotation CA Issuing CA G2"
    # Overlap: the bundle trusts both roots, old first.
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA", "CN=Rotation CA G2"]
    status = rotation_status(pki)
    assert status.phase == "overlap" and not status.safe_to_finish
    assert sorted(r.name for r in status.old_leaves) == ["localhost", "web"]
    assert _verifies(pki, "localhost") and _verifies(pki, "web")  # old leaves still accepted

    # New issuance comes from the new CA and chains to the new root in the bundle.
    pki.issue(Role.SERVER, "fresh")
    chain = certs_in(pki.find("fresh").chain_path)  # type: ignore[arg-type]
    assert chain[0].issuer.rfc4514_string() == ("CN=Rotation CA Issuing CA G2" if intermediate else "CN=Rotation CA G2")
    assert _verifies(pki, "fresh")
    assert not _verifies(pki, "fresh", trust=old_root)

    # renew --all renews leaves of the old generation although they are nowhere near expiry.
    results = {r.name: r for r in renew(pki)}
    assert results["localhost"].action == results["web"].action == "renewed"
    assert "still chains to the old CA" in results["localhost"].reason
    assert results["fresh"].action == "skipped"
    assert rotation_status(pki).safe_to_finish

    finished = finish_rotation(pki)
    assert finished.action == "finished"
    assert [c.subject for c in finished.dropped] == ["CN=Rotation CA"]
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA G2"]
    assert rotation_state(pki).phase == "idle"
    assert all(_verifies(pki, n) for n in ("localhost", "web", "fresh"))
    statuses = {(r.kind, r.ca_generation): r.status for r in pki.ca_records()}
    assert statuses[("root", 1)] == "archived" and statuses[("root", 2)] == "active"
    if intermediate:
        assert statuses[("intermediate", 1)] == "archived" and statuses[("intermediate", 2)] == "active"
    assert finish_rotation(pki).action == "nothing-to-do"


def test_begin_again_during_overlap_does_nothing(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    begin_rotation(pki)
    before = snapshot(pki.path / "ca") | {"ca.crt": pki.trust_bundle_path.read_bytes()}
    again = begin_rotation(pki)
    assert again.action == "already-in-progress"
    assert snapshot(pki.path / "ca") | {"ca.crt": pki.trust_bundle_path.read_bytes()} == before
    assert pki.generation == 2


def test_finish_refuses_while_leaves_chain_to_the_old_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    begin_rotation(pki)
    with pytest.raises(RotationError, match=r"2 active certificate\(s\) still chain to the old CA .*localhost, web"):
        finish_rotation(pki)
    assert rotation_state(pki).phase == "overlap"
    assert len(certs_in(pki.trust_bundle_path)) == 2

    forced = finish_rotation(pki, force=True)
    assert sorted(r.name for r in forced.stranded) == ["localhost", "web"]
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA G2"]
    assert not _verifies(pki, "localhost")  # the point of finishing: the old CA is no longer trusted


def _legacy_phase(pki: Pki, phase: str, **extra: object) -> None:
    """A phase recorded by a grpcpki from before the store journal, which ran begin/finish in steps."""
    state = {"phase": phase, "from": 1, "to": 2, "mode": "full", "cross_sign": False} | extra
    with pki.transaction():
        pki.inventory.set_meta("rotation", json.dumps(state))


def test_finish_before_begin_completed_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    _legacy_phase(pki, "preparing")
    with pytest.raises(RotationError, match="rerun `grpcpki ca rotate begin`"):
        finish_rotation(pki)


class SimulatedCrash(Exception):
    pass


def _crash(*_args: object, **_kwargs: object) -> None:
    raise SimulatedCrash


def _store_files(pki: Pki) -> dict[str, bytes]:
    return {
        str(p.relative_to(pki.path)): p.read_bytes()
        for p in pki.path.rglob("*")
        if p.is_file() and not p.name.startswith(("inventory.db", ".lock"))
    }


@pytest.mark.parametrize("step", ["_write_bundle", "write_crl", "_record_generation"])
def test_a_failed_begin_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    pki = make_pki(tmp_path, intermediate=True, path_len=2)
    with pki.transaction():
        pass
    from grpcpki.engine.revocation import write_crl

    write_crl(pki)
    before = _store_files(pki)
    with monkeypatch.context() as patch:
        patch.setattr(rotation_module, step, _crash)
        with pytest.raises(SimulatedCrash):
            begin_rotation(pki, cross_sign=True)
    # One store transaction: nothing of generation 2 exists, nothing is left half-written.
    assert pki.generation == 1 and rotation_state(pki).phase == "idle"
    assert _store_files(pki) == before
    assert not pki.ca_dir(2).exists()
    started = begin_rotation(pki, cross_sign=True)
    assert started.action == "started" and started.cross is not None
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA", "CN=Rotation CA G2"]
    assert len([r for r in pki.ca_records() if r.ca_generation == 2]) == 3  # root, intermediate, cross; once each


def test_begin_completes_a_preparing_phase_left_by_an_older_grpcpki(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, intermediate=True, path_len=2)
    _legacy_phase(pki, "preparing", cross_sign=True)
    resumed = begin_rotation(pki)  # no flags: the recorded ones (cross-sign) are used
    assert resumed.action == "resumed"
    assert pki.generation == 2 and rotation_state(pki).phase == "overlap"
    assert rotation_state(pki).cross_sign and resumed.cross is not None
    pki.issue(Role.SERVER, "fresh")
    assert _verifies(pki, "fresh")


def test_a_failed_finish_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_pki(tmp_path)
    begin_rotation(pki)
    with monkeypatch.context() as patch:
        patch.setattr(rotation_module, "_archive_cross", _crash)
        with pytest.raises(SimulatedCrash):
            finish_rotation(pki, force=True)
    assert rotation_state(pki).phase == "overlap"
    assert len(certs_in(pki.trust_bundle_path)) == 2
    result = finish_rotation(pki, force=True)
    assert result.action == "finished"
    assert rotation_state(pki).phase == "idle"
    assert [r.status for r in pki.ca_records() if r.ca_generation == 1] == ["archived"]


def test_finish_completes_a_finishing_phase_without_force(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    begin_rotation(pki)
    _legacy_phase(pki, "finishing")
    # The forced decision was recorded: finishing without --force completes it.
    result = finish_rotation(pki)
    assert result.action == "resumed"
    assert rotation_state(pki).phase == "idle"
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA G2"]


def test_intermediate_only_rotation_keeps_the_root(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, intermediate=True)
    bundle = pki.trust_bundle_path.read_bytes()
    result = begin_rotation(pki, intermediate_only=True)
    assert result.intermediate is not None and result.intermediate.subject == "CN=Rotation CA Issuing CA G2"
    assert result.intermediate.issuer == "CN=Rotation CA"
    assert pki.trust_bundle_path.read_bytes() == bundle  # nothing for peers to reload
    assert not (pki.ca_dir(2) / "root.key").exists()  # the root key is not copied
    pki.issue(Role.SERVER, "fresh")
    assert _verifies(pki, "fresh") and _verifies(pki, "localhost")
    assert sorted(r.name for r in rotation_status(pki).old_leaves) == ["localhost", "web"]
    renew(pki)
    finish_rotation(pki)
    assert pki.trust_bundle_path.read_bytes() == bundle
    statuses = {(r.kind, r.ca_generation): r.status for r in pki.ca_records()}
    assert statuses == {("root", 1): "active", ("intermediate", 1): "archived", ("intermediate", 2): "active"}
    # A second intermediate-only rotation finds the root key in generation 1.
    begin_rotation(pki, intermediate_only=True)
    pki.issue(Role.SERVER, "third")
    assert _verifies(pki, "third")


def test_intermediate_only_needs_an_intermediate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with pytest.raises(RotationError, match="--intermediate-only needs a PKI with an intermediate"):
        begin_rotation(pki, intermediate_only=True)
    assert rotation_state(pki).phase == "idle" and not pki.ca_dir(2).exists()


@pytest.mark.parametrize("intermediate", [False, True], ids=["root-only", "with-intermediate"])
def test_cross_signed_chain_verifies_against_the_old_root_alone(tmp_path: Path, intermediate: bool) -> None:
    # The defaults leave room: init-ca --intermediate gives the root pathLen 2 (intermediate +
    # cross-signed root below it), a root-only CA has no pathLen at all.
    pki = make_pki(tmp_path, intermediate=intermediate)
    old_root = (pki.ca_dir(1) / "root.crt").read_bytes()
    result = begin_rotation(pki, cross_sign=True)
    assert result.cross is not None
    assert result.cross.subject == "CN=Rotation CA G2" and result.cross.issuer == "CN=Rotation CA"
    pki.issue(Role.SERVER, "fresh")
    chain_path = pki.find("fresh").chain_path
    assert chain_path is not None
    # The cross certificate rides along, last (trusted-first verifiers stop before it).
    assert certs_in(chain_path)[-1].issuer.rfc4514_string() == "CN=Rotation CA"
    new_root = (pki.ca_dir(2) / "root.crt").read_bytes()
    assert _verifies(pki, "fresh", trust=old_root)  # a peer that never got the new bundle
    assert _verifies(pki, "fresh", trust=new_root)  # a peer that only has the new root
    assert any(r.kind == "cross" for r in pki.ca_records())

    renew(pki)
    finish_rotation(pki)
    assert not (pki.ca_dir(2) / "cross.crt").exists()
    assert (pki.path / "archive" / "ca" / "g2" / "cross.crt").is_file()
    assert [r.status for r in pki.ca_records() if r.kind == "cross"] == ["archived"]
    pki.issue(Role.SERVER, "after")
    assert len(certs_in(pki.find("after").chain_path)) == (2 if intermediate else 1)  # type: ignore[arg-type]


def test_cross_sign_refused_when_the_old_root_path_length_has_no_room(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, intermediate=True, path_len=1)  # room for the intermediate only
    with pytest.raises(RotationError, match="pathLenConstraint is 1"):
        begin_rotation(pki, cross_sign=True)
    assert rotation_state(pki).phase == "idle" and not pki.ca_dir(2).exists()


def test_encrypted_ca_keys_stay_encrypted_with_the_same_passphrase(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, intermediate=True, passphrase=b"correct horse")
    locked = Pki.open(pki.path)  # no passphrase source
    with pytest.raises(PassphraseError):
        begin_rotation(locked)
    begin_rotation(pki)
    for name in ("root.key", "intermediate.key"):
        assert is_encrypted_pem((pki.ca_dir(2) / name).read_bytes())
    assert Pki.open(pki.path, passphrase=b"correct horse").load_ca(2).info.subject == "CN=Rotation CA Issuing CA G2"


def test_second_full_rotation(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    for _ in range(2):
        begin_rotation(pki)
        renew(pki)
        finish_rotation(pki)
    assert pki.generation == 3
    assert subjects(pki.trust_bundle_path) == ["CN=Rotation CA G3"]
    assert _verifies(pki, "localhost") and _verifies(pki, "web")
