"""RevocationCheck: serve's per-call CRL lookup, without a server (grpcpki.greeter.crl)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grpcpki.engine import Pki, Role
from grpcpki.engine.revocation import revoke
from grpcpki.greeter.crl import RevocationCheck
from grpcpki.diagnosis.explain import explain
from grpcpki.greeter.errors import GreeterError


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    pki = Pki.init(tmp_path / "pki", name="CRL Test CA")
    pki.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    pki.issue(Role.CLIENT, "batch", sans=["spiffe://example.org/batch"])
    return pki


def _leaf(pki: Pki, name: str) -> bytes:
    return pki.material(name).cert_path.read_bytes()


def _replace(path: Path, data: bytes) -> None:
    """Write as a careful tool would (rename over), so the stamp surely changes."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_no_crl_yet_means_nothing_revoked_and_a_revoke_is_seen_on_the_next_check(pki: Pki) -> None:
    events: list[tuple[bool, str]] = []
    check = RevocationCheck(pki.path / "crl.pem", on_event=lambda ok, m: events.append((ok, m)))
    web, batch = _leaf(pki, "web"), _leaf(pki, "batch")
    assert check.revoked_count == 0 and check.check(web) is None
    serial = pki.find("web").serial
    revoke(pki, "web")
    revoked = check.check(web)
    assert revoked is not None and revoked.serial_hex == serial and revoked.crl == pki.path / "crl.pem"
    assert revoked.updated is not None
    message = revoked.message("spiffe://example.org/web")
    assert message.startswith(f"client certificate serial {serial} (spiffe://example.org/web) is revoked (crl.pem updated")
    assert check.check(batch) is None
    assert events == [(True, f"reloaded CRL {pki.path / 'crl.pem'}: 1 revoked certificate serial(s)")]
    # The client's reading of that message (greet).
    reading = explain("UNAUTHENTICATED", message, target="localhost:1")
    assert reading.kind == "client-cert-revoked" and f"(serial {serial}) is revoked" in reading.cause
    assert "grpcpki issue client NAME" in reading.fix


def test_explicit_crl_must_exist_and_be_readable_at_start(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(GreeterError, match="does not exist"):
        RevocationCheck(tmp_path / "nope.pem", must_exist=True)
    with pytest.raises(GreeterError, match="is a directory"):
        RevocationCheck(pki.path, must_exist=True)
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    with pytest.raises(GreeterError, match="cannot check client certificates for revocation: .*damaged CRL"):
        RevocationCheck(damaged)
    damaged.write_text("not a crl\n")
    with pytest.raises(GreeterError, match="holds no PEM CRL"):
        RevocationCheck(damaged)


def test_damaged_or_removed_crl_keeps_the_last_good_one_and_says_so_once(pki: Pki) -> None:
    revoke(pki, "web")
    crl = pki.path / "crl.pem"
    good = crl.read_bytes()
    events: list[tuple[bool, str]] = []
    check = RevocationCheck(crl, on_event=lambda ok, m: events.append((ok, m)))
    web = next(pki.path.glob("archive/web/*/cert.pem")).read_bytes()  # revoked: its files were archived
    batch = _leaf(pki, "batch")

    _replace(crl, b"garbage\n")
    for _ in range(3):  # fail neither open nor closed: web stays refused, batch stays served
        assert check.check(web) is not None and check.check(batch) is None
    assert len(events) == 1 and not events[0][0], events
    assert "could not be read" in events[0][1] and "still enforcing the previous CRL (1 revoked" in events[0][1]

    crl.unlink()
    assert check.check(web) is not None and check.check(batch) is None
    assert len(events) == 2 and "was removed" in events[1][1], events

    # Back to a good file listing both: picked up on the next check.
    revoke(pki, "batch")
    assert check.check(batch) is not None and check.check(web) is not None
    assert events[-1] == (True, f"reloaded CRL {crl}: 2 revoked certificate serial(s)")
    assert good != crl.read_bytes()


def test_auth_context_without_a_client_certificate_is_not_checked(pki: Pki) -> None:
    check = RevocationCheck(pki.path / "crl.pem")
    assert check.check_auth_context({"transport_security_type": [b"ssl"]}) is None
