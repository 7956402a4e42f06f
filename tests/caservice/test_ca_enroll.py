"""Enroll through the real entry points: `token create`, `ca-server`, `enroll` on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from caservice_support import CaService, Setup, file_mode
from support import assert_clean_error
from grpcpki.caservice import client
from grpcpki.engine.enrollment import (
    Policy, PolicyRejected, RateLimited, create_token, enroll, revoke_token, token_sans,
)
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.pki import Pki
from grpcpki.engine import workload


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_enroll_with_a_good_token_writes_key_chain_and_bundle(setup: Setup, service: CaService) -> None:
    token = setup.token("web", "--spiffe-id", "spiffe://example.org/web")
    assert token.startswith("grpcpki-enroll-")
    result = setup.enroll(service, token, "web", "--json")
    assert result.code == 0, result.output
    out = setup.tmp / "web"
    assert file_mode(out / "key.pem") == 0o600
    assert file_mode(out / "chain.pem") == 0o644
    assert (out / "ca.crt").read_bytes() == (setup.pki / "ca.crt").read_bytes()
    leaf = _leaf(out / "chain.pem")
    # The key generated on the workload is the one certified (it never went to the server: no key.pem in the PKI).
    key = serialization.load_pem_private_key((out / "key.pem").read_bytes(), None)
    assert key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not (setup.pki / "certs" / "web" / "key.pem").exists()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/web"]
    assert ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Lifetime capped by the server's --max-days (30 by default).
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=30, minutes=5)
    document = json.loads(result.stdout)
    assert document["serial"] == f"{leaf.serial_number:x}"
    # The token is spent, with the serial and the replica that used it; the audit row says the same.
    tokens = json.loads(setup.cli("token", "list", "--json").stdout)["tokens"]
    assert tokens[0]["used_serial"] == document["serial"] and tokens[0]["used_via"] == "r1"
    pki = Pki.open(setup.pki)
    from grpcpki.engine.enrollment import store_for

    audit = store_for(pki).audit("web")
    assert [(a.action, a.serial, a.replica, a.actor) for a in audit] == [
        ("enroll", document["serial"], "r1", f"token:{tokens[0]['token_id']}")
    ]
    # Stored in the inventory like any certificate.
    assert "web" in setup.cli("list").stdout


def test_a_reused_token_is_refused(setup: Setup, service: CaService) -> None:
    token = setup.token("web")
    assert setup.enroll(service, token, "first").code == 0
    again = setup.enroll(service, token, "second")
    assert_clean_error(again, "already used", "one-time")
    assert not (setup.tmp / "second").exists()


def test_an_expired_token_is_refused(setup: Setup, service: CaService) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    created = create_token(Pki.open(setup.pki), "web", "client", ttl=timedelta(minutes=5), now=an_hour_ago)
    result = setup.enroll(service, created.secret, "web")
    assert_clean_error(result, "expired")
    assert not (setup.tmp / "web").exists()


def test_a_revoked_token_is_refused_and_listed_as_revoked(setup: Setup, service: CaService) -> None:
    created = {name: create_token(Pki.open(setup.pki), name, "client") for name in ("web", "api", "spare")}
    token_id = created["web"].row.token_id
    revoked = setup.cli("token", "revoke", token_id, "--json")
    assert revoked.code == 0, revoked.output
    assert json.loads(revoked.stdout)["action"] == "revoked" and json.loads(revoked.stdout)["state"] == "revoked"
    assert_clean_error(setup.enroll(service, created["web"].secret, "web"), f"(id {token_id}, for 'web') was revoked on")
    assert not (setup.tmp / "web").exists()
    again = setup.cli("token", "revoke", token_id)
    assert again.code == 0 and "already revoked" in again.stderr, again.output
    # A used token cannot be revoked (its certificate can); unknown ids and secrets in argv are refused.
    used = client.enroll(service.enroll, token=created["api"].secret, csr_pem=workload.new_key_and_csr("api").csr_pem,
                         kind="", ca_pem=(setup.pki / "ca.crt").read_bytes())
    assert_clean_error(setup.cli("token", "revoke", created["api"].row.token_id), "already used",
                       f"grpcpki revoke {used.serial}")
    with pytest.raises(GrpcpkiError, match="no enrollment token with id"):
        revoke_token(Pki.open(setup.pki), "0123456789ab")
    assert_clean_error(setup.cli("token", "revoke", created["spare"].secret), "TOKEN_ID", code=2)
    # '-': the secret itself, through the environment.
    assert setup.cli("token", "revoke", "-", env={"GRPCPKI_ENROLL_TOKEN": created["spare"].secret}).code == 0
    table = setup.cli("token", "list").stdout
    assert f"{token_id}  client  web  revoked " in table and "api  used " in table and "spare  revoked " in table


def test_a_token_for_another_kind_is_refused(setup: Setup, service: CaService) -> None:
    token = setup.token("web", kind="client")
    result = setup.enroll(service, token, "web", "--kind", "server")
    assert_clean_error(result, "is for a client certificate, not a server one")
    # Refused without spending it: the right kind still enrolls.
    assert setup.enroll(service, token, "web", "--kind", "client").code == 0


def test_an_unknown_token_and_a_wrong_bundle_are_one_line_errors(setup: Setup, service: CaService) -> None:
    assert_clean_error(setup.enroll(service, "grpcpki-enroll-nope", "x"), "unknown enrollment token")
    other = setup.tmp / "other.pem"
    other.write_text("not a certificate\n")
    token = setup.token("web")
    result = setup.enroll(service, token, "x", "--ca-bundle", str(other))
    assert result.code == 1 and "Traceback" not in result.output


def test_token_create_checks_names_up_front(setup: Setup) -> None:
    result = setup.cli("token", "create", "web", "--kind", "client", "--dns", "bad_name!")
    assert result.code == 2 and "--dns" in result.stderr and "Traceback" not in result.output
    setup.cli("issue", "client", "taken")
    assert_clean_error(setup.cli("token", "create", "taken", "--kind", "client"), "already exists")
    # No secret printed for a refused token.
    assert setup.cli("token", "list", "--json").stdout.count("token_id") == 0


def test_a_csr_cannot_widen_the_names_a_token_allows(setup: Setup) -> None:
    pki = Pki.open(setup.pki)
    created = create_token(pki, "api", "server", sans=token_sans(dns=["api.internal"]))
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example.com")]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PolicyRejected, match="evil.example.com"):
        enroll(pki, token=created.secret, csr_pem=csr)
    # The token was not spent by the refused request.
    assert enroll(pki, token=created.secret, csr_pem=workload.new_key_and_csr("api").csr_pem).name == "api"


def test_rate_limit_per_identity(setup: Setup) -> None:
    pki = Pki.open(setup.pki)
    policy = Policy(rate_count=1, rate_window=timedelta(hours=1))
    first = create_token(pki, "web", "client")
    enroll(pki, token=first.secret, csr_pem=workload.new_key_and_csr("web").csr_pem, policy=policy)
    second = create_token(pki, "web", "client", replace=True)
    with pytest.raises(RateLimited, match="limit 1"):
        enroll(pki, token=second.secret, csr_pem=workload.new_key_and_csr("web").csr_pem, policy=policy)
