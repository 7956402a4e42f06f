"""Every MUST / MUST NOT of the SPIFFE standards a certificate can break (grpcpki/diagnosis/spiffe.py
RULES): the doctor names the section for anyone's material that breaks it, and `grpcpki issue`
never signs a certificate that breaks it (it refuses the input, or what it signs keeps the rule).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import badcerts as b
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from support import run_grpcpki

from grpcpki.diagnosis.doctor import check_material
from grpcpki.diagnosis.spiffe import RULES, spiffe_findings
from grpcpki.engine import CA, InvalidNameError, Role

NOW = b.now
ID = "spiffe://example.org/web"
SERVER_AND_CLIENT = [b.SERVER_AUTH, b.CLIENT_AUTH]


def _leaf(
    issuer: b.Material,
    *,
    uris: tuple[str, ...] = (ID,),
    subject: bool = True,
    san_critical: bool = False,
    ku: x509.KeyUsage | None = None,
    ku_critical: bool = True,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "web")]) if subject else x509.Name([])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(hours=1)).not_valid_after(NOW() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(ku or b.key_usage(digital_signature=True), critical=ku_critical)
        .add_extension(x509.ExtendedKeyUsage(eku or SERVER_AND_CLIENT), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=san_critical
        )
    )
    return builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]


def _signing(uri: str | None = None, *, ca: bool = True, ku: x509.KeyUsage | None = None, ku_critical: bool = True) -> b.Material:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SVID CA")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(hours=1)).not_valid_after(NOW() + dt.timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(ku or b.key_usage(key_cert_sign=True, crl_sign=True), critical=ku_critical)
    )
    if uri:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
    return b.Material(builder.sign(key, hashes.SHA256()), key)


GOOD_CA = _signing("spiffe://example.org")

# rule id -> a certificate (and its issuer) that breaks that rule and no other.
BREAKS: dict[str, Callable[[], tuple[x509.Certificate, b.Material]]] = {
    "spiffe-id-syntax": lambda: (_leaf(GOOD_CA, uris=("spiffe://example.org/web?version=2",)), GOOD_CA),
    "one-uri-san": lambda: (_leaf(GOOD_CA, uris=(ID, "spiffe://example.org/db")), GOOD_CA),
    "leaf-path": lambda: (_leaf(GOOD_CA, uris=("spiffe://example.org",)), GOOD_CA),
    "critical-san-without-subject": lambda: (_leaf(GOOD_CA, subject=False), GOOD_CA),
    "leaf-ca-false": lambda: (_leaf(GOOD_CA, ca=True), GOOD_CA),
    "key-usage-critical": lambda: (_leaf(GOOD_CA, ku_critical=False), GOOD_CA),
    "leaf-digital-signature": lambda: (_leaf(GOOD_CA, ku=b.key_usage(key_encipherment=True)), GOOD_CA),
    "leaf-no-cert-sign": lambda: (_leaf(GOOD_CA, ku=b.key_usage(digital_signature=True, crl_sign=True)), GOOD_CA),
    "leaf-eku-both": lambda: (_leaf(GOOD_CA, eku=[b.CLIENT_AUTH]), GOOD_CA),
    "signing-no-path": lambda: (lambda ca: (_leaf(ca), ca))(_signing("spiffe://example.org/ca")),
    "signing-ca-true": lambda: (lambda ca: (_leaf(ca), ca))(_signing(ca=False)),
    "signing-key-usage-critical": lambda: (lambda ca: (_leaf(ca), ca))(_signing(ku_critical=False)),
    "signing-key-cert-sign": lambda: (lambda ca: (_leaf(ca), ca))(_signing(ku=b.key_usage(crl_sign=True))),
}


def test_every_rule_has_a_case() -> None:
    assert set(BREAKS) == {r.id for r in RULES}


def test_a_good_svid_keeps_every_rule() -> None:
    assert spiffe_findings(_leaf(GOOD_CA), [GOOD_CA.cert], "leaf", "fix") == []


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_doctor_names_the_section_each_broken_rule_is_in(rule: object) -> None:
    from grpcpki.diagnosis.spiffe import Rule

    assert isinstance(rule, Rule)
    leaf, issuer = BREAKS[rule.id]()
    found = [f for f in spiffe_findings(leaf, [issuer.cert], "the certificate", "fix") if f.id == "spiffe-svid"]
    assert [f.message for f in found if rule.section in f.message and rule.must in f.message], found
    assert all(f.severity is rule.severity for f in found if rule.must in f.message)
    # The same through the doctor's entry point, with the issuer as the trust bundle.
    from cryptography.hazmat.primitives import serialization

    pem = leaf.public_bytes(serialization.Encoding.PEM)
    assert any(rule.section in f.message for f in check_material(pem, role="client", trust=issuer.cert_pem))


# ------------------------------------------------------------------------------------- issuing


def _issued(role: Role, sans: list[str]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    root = CA.create("SVID Root")
    issuing = root.create_intermediate("SVID Issuing")
    leaf = issuing.issue(role, "web", sans=sans)
    return x509.load_pem_x509_certificate(leaf.cert_pem), [issuing.certificate, root.certificate]


# rule id -> SANs that would break it if grpcpki passed them through (None: no input can).
REFUSED: dict[str, list[str] | None] = {
    "spiffe-id-syntax": ["spiffe://example.org/web?version=2"],
    "one-uri-san": [ID, "spiffe://example.org/db"],
    "leaf-path": ["spiffe://example.org"],
}


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=str)
def test_issue_never_breaks_the_rule(rule: object, role: Role) -> None:
    from grpcpki.diagnosis.spiffe import Rule

    assert isinstance(rule, Rule)
    bad = REFUSED.get(rule.id)
    if bad is not None:
        with pytest.raises(InvalidNameError):
            CA.create("SVID Root").issue(role, "web", sans=bad)
    leaf, issuers = _issued(role, [ID])
    for cert in [leaf] if rule.applies == "leaf" else issuers:
        assert rule.broken(cert) is None, f"grpcpki issued a certificate that breaks {rule.section}: {rule.must}"


def test_issue_refuses_what_breaks_an_svid_rule_in_one_clear_line(tmp_path: object) -> None:
    env = {"GRPCPKI_HOME": f"{tmp_path}/pki"}
    assert run_grpcpki("init-ca", env=env).code == 0
    two = run_grpcpki("issue", "client", "web", "--spiffe-id", ID, "--uri", "https://example.org/x", env=env)
    assert two.code == 1 and "exactly one URI SAN (X509-SVID section 2)" in two.stderr and "Traceback" not in two.output
    root_id = run_grpcpki("issue", "client", "web", "--spiffe-id", "spiffe://example.org", env=env)
    assert root_id.code == 1 and "X509-SVID section 3.1" in root_id.stderr
    ok = run_grpcpki("issue", "client", "web", "--spiffe-id", ID, "--json", env=env)
    assert ok.code == 0, ok.output
    import json

    assert json.loads(ok.stdout)["extended_key_usage"] == ["serverAuth", "clientAuth"]  # X509-SVID 4.4
    doctor = run_grpcpki("doctor", "web", "--json", env=env)
    assert doctor.code == 0 and json.loads(doctor.stdout)["checked"][0]["findings"] == [], doctor.output


def test_allow_list_denial_says_the_spiffe_id_was_a_dns_name(tmp_path: object) -> None:
    from pathlib import Path

    from diagnosis_support import run_many, start_servers

    root = b.make_ca("Allow CA")
    server = b.make_leaf(root)
    # cfssl's shape: the SPIFFE ID from `hosts` written as a DNS SAN.
    client = b.make_leaf(root, "web", sans=["DNS:spiffe://example.org/web"], eku=[b.CLIENT_AUTH])
    base = Path(str(tmp_path))
    for name, data in (("ca.pem", root.cert_pem), ("s.pem", server.cert_pem), ("s.key", server.key_pem),
                       ("c.pem", client.cert_pem), ("c.key", client.key_pem)):
        (base / name).write_bytes(data)
    served = start_servers({"allow": ["--cert", str(base / "s.pem"), "--key", str(base / "s.key"), "--ca",
                                      str(base / "ca.pem"), "--allow", ID]})["allow"]
    try:
        (greet,) = run_many(["greet", "--server", f"localhost:{served.port}", "--cert", str(base / "c.pem"), "--key",
                             str(base / "c.key"), "--ca", str(base / "ca.pem"), "--json"])
        reading = greet.json_lines()[0]
        assert reading["kind"] == "permission-denied", reading
        assert "as a DNS SAN, not as a URI SAN" in str(reading["cause"]), reading
        assert f"grpcpki issue client web-svid --spiffe-id {ID}" in str(reading["fix"]), reading
        log = served.wait_for("as a DNS SAN")
        assert f"it presents {ID} as a DNS SAN, not as a URI SAN" in log and f"add `--allow {ID}`" not in log, log
    finally:
        served.stop()
