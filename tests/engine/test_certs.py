"""The in-memory CA: profiles, chains, key types, validity rules, verified by independent checkers."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from helpers import assert_is_ca, assert_is_leaf

from support import OPENSSL, requires_openssl
from grpcpki.engine import (
    CA,
    CannotSignError,
    KeyMismatchError,
    KeyType,
    NameConstraintError,
    NameConstraints,
    PassphraseError,
    PemError,
    Role,
    ValidityError,
    check_key_pair,
    verify_chain,
)

FAST_KEY_TYPES = [KeyType.ECDSA_P256, KeyType.ECDSA_P384, KeyType.RSA_2048, KeyType.ED25519]


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@pytest.mark.parametrize("key_type", FAST_KEY_TYPES, ids=lambda k: k.value)
def test_root_and_leaves_have_the_right_profiles(key_type: KeyType) -> None:
    ca = CA.create("Test CA", key_type=key_type)
    assert_is_ca(ca.certificate)
    server = ca.issue(Role.SERVER, "localhost", key_type=key_type)
    client = ca.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"], key_type=key_type)
    assert_is_leaf(_cert(server.cert_pem), server=True, client=False)
    # A client with a SPIFFE ID is an X509-SVID: both EKUs (X509-SVID section 4.4).
    assert_is_leaf(_cert(client.cert_pem), server=True, client=True, server_profile=False)
    plain_client = ca.issue(Role.CLIENT, "batch", key_type=key_type)
    assert_is_leaf(_cert(plain_client.cert_pem), server=False, client=True)
    assert verify_chain(server.chain_pem, ca.root_pem, Role.SERVER, host="localhost").ok
    assert verify_chain(client.chain_pem, ca.root_pem, Role.CLIENT).ok


def test_localhost_server_is_dialable_by_name_and_both_loopback_addresses() -> None:
    ca = CA.create()
    server = ca.issue(Role.SERVER, "localhost")
    assert [str(s) for s in server.info.sans] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    for host in ("localhost", "127.0.0.1", "::1"):
        assert verify_chain(server.chain_pem, ca.root_pem, Role.SERVER, host=host).ok, host
    check = verify_chain(server.chain_pem, ca.root_pem, Role.SERVER, host="other.example")
    assert not check.ok


def test_wrong_purpose_is_rejected_by_the_verifier() -> None:
    ca = CA.create()
    client = ca.issue(Role.CLIENT, "api.example.com")
    assert not verify_chain(client.chain_pem, ca.root_pem, Role.SERVER, host="api.example.com").ok
    both = ca.issue(Role.SERVER, "peer.example.com", also_client=True)
    assert_is_leaf(_cert(both.cert_pem), server=True, client=True)
    assert verify_chain(both.chain_pem, ca.root_pem, Role.CLIENT).ok


def test_intermediate_chain_is_served_in_full() -> None:
    root = CA.create("Root", path_len=1)
    issuing = root.create_intermediate("Issuing")
    assert_is_ca(issuing.certificate, path_len=0)
    leaf = issuing.issue(Role.SERVER, "api.example.com")
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=api.example.com", "CN=Issuing"]
    assert issuing.root_pem == root.cert_pem
    assert verify_chain(leaf.chain_pem, root.root_pem, Role.SERVER, host="api.example.com").ok
    # Without the intermediate the leaf does not chain: the classic "missing intermediate".
    assert not verify_chain(leaf.cert_pem, root.root_pem, Role.SERVER, host="api.example.com").ok


def test_path_len_zero_cannot_sign_an_intermediate() -> None:
    root = CA.create(path_len=0)
    with pytest.raises(CannotSignError, match="pathLenConstraint 0"):
        root.create_intermediate("nope")


def test_serials_are_random_and_unique() -> None:
    ca = CA.create()
    serials = {ca.issue(Role.CLIENT, f"c{i}").info.serial for i in range(20)}
    assert len(serials) == 20


def test_not_before_is_backdated_and_default_validity_is_90_days() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    ca = CA.create(now=now)
    leaf = ca.issue(Role.SERVER, "localhost", now=now)
    assert leaf.info.not_before == now - timedelta(minutes=5)
    assert leaf.info.not_after == now + timedelta(days=90)


def test_leaf_may_not_outlive_its_ca() -> None:
    now = datetime.now(UTC)
    ca = CA.create(days=30, now=now)
    with pytest.raises(ValidityError) as info:
        ca.issue(Role.SERVER, "localhost", days=90)
    assert "past the CA's expiry" in info.value.message
    assert "--days" in (info.value.hint or "")
    assert ca.issue(Role.SERVER, "localhost", days=29).info.not_after <= ca.info.not_after


def test_expired_ca_cannot_sign() -> None:
    past = datetime.now(UTC) - timedelta(days=400)
    ca = CA.create(days=365, now=past)
    with pytest.raises(CannotSignError, match="expired"):
        ca.issue(Role.SERVER, "localhost")


def test_time_travel_makes_expired_and_not_yet_valid_leaves() -> None:
    now = datetime.now(UTC)
    ca = CA.create(now=now - timedelta(days=1000))
    expired = ca.issue(Role.SERVER, "localhost", days=10, now=now - timedelta(days=100))
    future = ca.issue(Role.SERVER, "localhost", now=now + timedelta(days=10))
    assert expired.info.validity_state() == "expired"
    assert future.info.validity_state() == "not-yet-valid"
    assert "expired" in verify_chain(expired.chain_pem, ca.root_pem, Role.SERVER).detail.lower() or not verify_chain(
        expired.chain_pem, ca.root_pem, Role.SERVER
    ).ok


def test_name_constraints_are_written_and_enforced_before_signing() -> None:
    constraints = NameConstraints.parse(dns=[".svc.cluster.local"], uri=["spiffe://example.org"], ip=["10.0.0.0/8"])
    ca = CA.create("Constrained", constraints=constraints)
    extension = ca.certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical is True
    ok = ca.issue(Role.SERVER, "api.prod.svc.cluster.local", sans=["ip:10.1.2.3", "spiffe://example.org/api"])
    assert verify_chain(ok.chain_pem, ca.root_pem, Role.SERVER, host="api.prod.svc.cluster.local").ok
    for bad in (["dns:evil.example.com"], ["ip:192.168.0.1"], ["spiffe://other.org/x"]):
        with pytest.raises(NameConstraintError, match="outside the CA's permitted"):
            ca.issue(Role.CLIENT, "c", sans=bad, name_as_san=False)
    # The intermediate repeats the constraints, so verifiers that read only it still see them.
    issuing = ca.create_intermediate("Issuing")
    assert issuing.info.name_constraints == ca.info.name_constraints


def test_key_reuse_keeps_the_public_key() -> None:
    ca = CA.create()
    first = ca.issue(Role.SERVER, "localhost")
    second = ca.issue(Role.SERVER, "localhost", key_pem=first.key_pem)
    assert _cert(first.cert_pem).public_key() == _cert(second.cert_pem).public_key()
    assert first.info.serial != second.info.serial


def test_check_key_pair() -> None:
    ca = CA.create()
    a, b = ca.issue(Role.SERVER, "a.example"), ca.issue(Role.SERVER, "b.example")
    check_key_pair(a.chain_pem, a.key_pem)
    with pytest.raises(KeyMismatchError, match="does not belong"):
        check_key_pair(a.chain_pem, b.key_pem)
    with pytest.raises(PemError, match="not a PEM"):
        check_key_pair(b"hello", a.key_pem)
    with pytest.raises(PemError, match="holds a certificate, not a private key"):
        check_key_pair(a.chain_pem, a.cert_pem)
    with pytest.raises(PemError, match="holds a private key, not a certificate"):
        check_key_pair(a.key_pem, a.key_pem)


def test_encrypted_ca_key_round_trip() -> None:
    ca = CA.create()
    encrypted = ca.private_key_pem(b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    loaded = CA.load(ca.cert_pem, encrypted, passphrase=b"s3cret")
    assert loaded.info.serial == ca.info.serial
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        CA.load(ca.cert_pem, encrypted, passphrase=b"nope")
    with pytest.raises(PassphraseError, match="no passphrase"):
        CA.load(ca.cert_pem, encrypted)


def test_a_leaf_cannot_act_as_a_ca() -> None:
    ca = CA.create()
    leaf = ca.issue(Role.SERVER, "localhost")
    with pytest.raises(CannotSignError, match="not a CA"):
        CA.load(leaf.cert_pem, leaf.key_pem).issue(Role.CLIENT, "c")


@requires_openssl
@pytest.mark.parametrize("intermediate", [False, True], ids=["root-only", "with-intermediate"])
def test_openssl_verifies_chains_for_their_purpose(tmp_path: Path, intermediate: bool) -> None:
    root = CA.create("Root")
    issuer = root.create_intermediate("Issuing") if intermediate else root
    server = issuer.issue(Role.SERVER, "localhost")
    # No SPIFFE ID: an X509-SVID carries both EKUs (X509-SVID 4.4) and verifies for either purpose.
    client = issuer.issue(Role.CLIENT, "web")
    (tmp_path / "ca.crt").write_bytes(root.root_pem)
    (tmp_path / "untrusted.pem").write_bytes(issuer.intermediates_pem or root.root_pem)
    for name, leaf, purpose, wrong in (("server", server, "sslserver", "sslclient"), ("client", client, "sslclient", "sslserver")):
        (tmp_path / f"{name}.pem").write_bytes(leaf.cert_pem)
        base = [OPENSSL, "verify", "-CAfile", str(tmp_path / "ca.crt"), "-untrusted", str(tmp_path / "untrusted.pem")]
        ok = subprocess.run([*base, "-purpose", purpose, str(tmp_path / f"{name}.pem")], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = subprocess.run([*base, "-purpose", wrong, str(tmp_path / f"{name}.pem")], capture_output=True, text=True)
        assert bad.returncode != 0, f"{name} must not verify for {wrong}"
    host = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(tmp_path / "ca.crt"), "-untrusted", str(tmp_path / "untrusted.pem"),
         "-verify_hostname", "localhost", "-verify_ip", "127.0.0.1", str(tmp_path / "server.pem")],
        capture_output=True, text=True,
    )
    assert host.returncode == 0, host.stdout + host.stderr


@pytest.mark.parametrize(
    ("host", "ok"),
    [("LOCALHOST.", True), ("[::1]", True), ("127.0.0.1", True), ("other.example", False), ("bad host", False)],
)
def test_verify_chain_normalises_the_dialed_host(host: str, ok: bool) -> None:
    ca = CA.create()
    server = ca.issue(Role.SERVER, "localhost")
    assert verify_chain(server.chain_pem, ca.root_pem, Role.SERVER, host=host).ok is ok


def test_wildcards_need_two_labels_beneath_them() -> None:
    from grpcpki.engine.names import San
    from grpcpki.engine.verify import name_matches

    assert name_matches("api.svc.example", (San("dns", "*.svc.example"),))
    assert not name_matches("a.b.svc.example", (San("dns", "*.svc.example"),))
    assert not name_matches("example.com", (San("dns", "*.com"),))
    assert not name_matches("127.0.0.1", (San("dns", "127.0.0.1"),))
