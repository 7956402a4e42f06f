"""Leaf renewal in the engine: thresholds (with time travel), identity kept, idempotence."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from rotation_helpers import later, make_pki, snapshot

from grpcpki.engine import NotFoundError, Role, cert_info, verify_chain
from grpcpki.engine.rotation import lifetime_days, plan_renewals, renew, renewal_due


def _actions(results: list) -> dict[str, str]:
    return {r.name: r.action for r in results}


def test_fresh_certificates_are_not_due(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    before = snapshot(pki.path)
    results = renew(pki)
    assert _actions(results) == {"localhost": "skipped", "web": "skipped"}
    assert all(r.reason.startswith("not due") for r in results)
    assert snapshot(pki.path) == before


@pytest.mark.parametrize(
    ("days_later", "within", "due"),
    [
        pytest.param(59, None, False, id="day59-before-two-thirds"),
        pytest.param(61, None, True, id="day61-past-two-thirds"),
        pytest.param(50, timedelta(days=45), True, id="inside-window"),
        pytest.param(50, timedelta(days=30), False, id="outside-window"),
        pytest.param(91, None, True, id="expired"),
    ],
)
def test_renewal_thresholds(tmp_path: Path, days_later: int, within: timedelta | None, due: bool) -> None:
    pki = make_pki(tmp_path)
    record = pki.find("localhost")
    assert renewal_due(record, current_generation=1, within=within, now=later(days_later))[0] is due


def test_renew_past_two_thirds_then_second_run_is_a_no_op(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    old = pki.find("localhost")
    first = renew(pki, now=later(61))
    assert _actions(first) == {"localhost": "renewed", "web": "renewed"}
    by_name = {r.name: r for r in first}
    assert by_name["localhost"].old_serial == old.serial
    assert by_name["localhost"].new_serial == pki.find("localhost").serial != old.serial
    before = snapshot(pki.path)
    second = renew(pki, now=later(61))
    assert _actions(second) == {"localhost": "skipped", "web": "skipped"}
    assert snapshot(pki.path) == before


def test_renewal_keeps_name_sans_usages_and_lifetime(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    pki.issue(Role.SERVER, "api", sans=["dns:api.internal", "ip:10.0.0.7"], also_client=True, days=10,
              name_as_san=False)
    old = cert_info(pki.find("api").cert_path.read_bytes())  # type: ignore[union-attr]
    renew(pki, ["api"], force=True)
    new_record = pki.find("api")
    new = cert_info(new_record.cert_path.read_bytes())  # type: ignore[union-attr]
    assert new.serial != old.serial
    assert new.subject == old.subject == "CN=api"
    assert new.sans == old.sans  # NAME was not added as a SAN: it was left out on purpose
    assert new.extended_key_usage == old.extended_key_usage == ("serverAuth", "clientAuth")
    assert lifetime_days(new_record) == 10
    trust = pki.trust_bundle_path.read_bytes()
    assert verify_chain(new_record.chain_path.read_bytes(), trust, Role.SERVER, host="10.0.0.7").ok  # type: ignore[union-attr]


def test_client_spiffe_id_survives_renewal(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    old = pki.find("web")
    renew(pki, ["web"], force=True)
    info = cert_info(pki.find("web").cert_path.read_bytes())  # type: ignore[union-attr]
    assert tuple(str(s) for s in info.sans) == old.sans
    assert "URI:spiffe://example.org/web" in old.sans
    assert info.extended_key_usage == ("serverAuth", "clientAuth")  # an X509-SVID (X509-SVID 4.4)


@pytest.mark.parametrize(("rekey", "same_key"), [(False, True), (True, False)], ids=["keep-key", "rekey"])
def test_keep_key_keeps_the_public_key(tmp_path: Path, rekey: bool, same_key: bool) -> None:
    pki = make_pki(tmp_path)
    old_key = pki.find("localhost").key_path.read_bytes()  # type: ignore[union-attr]
    renew(pki, ["localhost"], force=True, rekey=rekey)
    record = pki.find("localhost")
    assert (record.key_path.read_bytes() == old_key) is same_key  # type: ignore[union-attr]
    from grpcpki.engine import check_key_pair

    check_key_pair(record.chain_path.read_bytes(), record.key_path.read_bytes())  # type: ignore[union-attr]


def test_old_files_are_archived_and_row_superseded(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    old = pki.find("localhost")
    old_cert = old.cert_path.read_bytes()  # type: ignore[union-attr]
    (result,) = renew(pki, ["localhost"], force=True)
    archived = pki.path / "archive" / "localhost" / old.serial
    assert (archived / "cert.pem").read_bytes() == old_cert
    assert (archived / "key.pem").stat().st_mode & 0o777 == 0o600
    row = pki.inventory.by_serial(old.serial)
    assert row is not None and row.status == "superseded" and row.superseded_by == pki.find("localhost").id
    assert row.cert_path == archived / "cert.pem"
    assert result.reason == "forced"


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    before = snapshot(pki.path)
    results = renew(pki, dry_run=True, now=later(70))
    assert _actions(results) == {"localhost": "would-renew", "web": "would-renew"}
    assert snapshot(pki.path) == before


def test_one_failure_does_not_stop_the_others(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    pki.find("web").key_path.unlink()  # type: ignore[union-attr]
    results = renew(pki, force=True, rekey=False)
    by_name = {r.name: r for r in results}
    assert by_name["localhost"].action == "renewed"
    assert by_name["web"].action == "failed" and "--rekey" in by_name["web"].reason


def test_unknown_name_is_an_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with pytest.raises(NotFoundError, match="no active certificate named 'nope'"):
        plan_renewals(pki, ["nope"])
