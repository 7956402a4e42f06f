"""grpcpki.diagnosis.doctor: every finding id is triggered by real (broken) material."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badcerts as b
import pytest
from cryptography import x509

from grpcpki.engine import CA, KeyType, Role
from grpcpki.diagnosis.doctor import (
    FINDINGS,
    Finding,
    Severity,
    check_key_file,
    check_material,
    check_pem_file,
    check_trust_bundle,
    has_errors,
    matches_host,
)


@dataclass(frozen=True)
class World:
    """Good material from a badcerts root, plus a directory for files."""

    root: b.Material
    server: b.Material
    client: b.Material
    tmp: Path

    def write(self, name: str, data: bytes, mode: int = 0o600) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        os.chmod(path, mode)
        return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = b.make_ca()
    return World(
        root=root,
        server=b.make_leaf(root),
        client=b.make_leaf(root, "web", sans=["URI:spiffe://example.org/web"], eku=[b.CLIENT_AUTH]),
        tmp=tmp_path_factory.mktemp("doctor"),
    )


def ids(findings: list[Finding]) -> dict[str, Severity]:
    return {f.id: f.severity for f in findings}


# --------------------------------------------------------------------------- happy paths


@pytest.mark.filterwarnings("error")  # nothing on stderr either (a cryptography deprecation did that once)
def test_engine_issued_server_and_client_have_no_findings() -> None:
    ca = CA.create("Doctor CA")
    inter = ca.create_intermediate("Doctor Issuing CA")
    server = inter.issue(Role.SERVER, "localhost")
    client = inter.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"])
    for host in ("localhost", "127.0.0.1", "::1", "[::1]", "LOCALHOST."):
        assert check_material(server.chain_pem, server.key_pem, role=Role.SERVER, trust=ca.root_pem, host=host) == []
    assert check_material(client.chain_pem, client.key_pem, role="client", trust=ca.root_pem) == []


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.ED25519], ids=str)
def test_engine_key_types_have_no_errors(key_type: KeyType) -> None:
    ca = CA.create("Doctor CA", key_type=key_type)
    leaf = ca.issue(Role.SERVER, "localhost", key_type=key_type)
    findings = check_material(leaf.chain_pem, leaf.key_pem, role="server", trust=ca.root_pem, host="localhost")
    assert not has_errors(findings), findings


def test_files_on_disk_happy_path(world: World) -> None:
    cert = world.write("ok.crt", world.server.cert_pem, 0o644)
    key = world.write("ok.key", world.server.key_pem)
    trust = world.write("ok-ca.pem", world.root.cert_pem, 0o644)
    assert check_material(cert, key, role="server", trust=trust, host="localhost") == []
    assert check_key_file(key, cert=cert) == []
    assert check_trust_bundle(trust, peer=cert, role="server") == []
    assert check_pem_file(cert, "certificate") == []


# --------------------------------------------------------------------------- one case per finding id

Case = Callable[[World], list[Finding]]
NOW = b.now


def _expired(w: World) -> list[Finding]:
    leaf = b.make_leaf(w.root, not_before=NOW() - dt.timedelta(days=30), not_after=NOW() - dt.timedelta(days=1))
    return check_material(leaf.cert_pem, leaf.key_pem, role="server", trust=w.root.cert_pem)


def _leaf(w: World, **kwargs: object) -> b.Material:
    return b.make_leaf(w.root, **kwargs)  # type: ignore[arg-type]


def _server(w: World, leaf: b.Material, **kwargs: object) -> list[Finding]:
    return check_material(leaf.cert_pem, leaf.key_pem, role="server", trust=w.root.cert_pem, **kwargs)  # type: ignore[arg-type]


def _client(w: World, leaf: b.Material) -> list[Finding]:
    return check_material(leaf.cert_pem, leaf.key_pem, role="client", trust=w.root.cert_pem)


def _intermediate_world(w: World, **kwargs: object) -> tuple[b.Material, b.Material]:
    inter = b.make_ca("Issuing CA", issuer=w.root, **kwargs)  # type: ignore[arg-type]
    return inter, b.make_leaf(inter)


def _crl(issuer: b.Material, *revoked: b.Material) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW() - dt.timedelta(hours=1))
        .next_update(NOW() + dt.timedelta(days=7))
    )
    for leaf in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(leaf.cert.serial_number)
        builder = builder.add_revoked_certificate(entry.revocation_date(NOW() - dt.timedelta(minutes=5)).build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


CASES: list[tuple[str, Case, str, Severity]] = [
    ("cert file missing", lambda w: check_material(str(w.tmp / "nope.crt")), "file-missing", Severity.ERROR),
    ("cert path is a directory", lambda w: check_material(str(w.tmp)), "file-unreadable", Severity.ERROR),
    ("empty cert file", lambda w: check_material(w.write("empty.crt", b"")), "not-pem", Severity.ERROR),
    (
        "DER cert file",
        lambda w: check_material(w.write("der.crt", w.server.cert.public_bytes(b.serialization.Encoding.DER))),
        "not-pem",
        Severity.ERROR,
    ),
    ("garbage key file", lambda w: check_key_file(w.write("junk.key", b"hello\n")), "not-pem", Severity.ERROR),
    (
        "key where a certificate belongs",
        lambda w: check_material(w.write("swapped.crt", w.server.key_pem)),
        "wrong-pem-type",
        Severity.ERROR,
    ),
    (
        "certificate where a key belongs",
        lambda w: check_key_file(w.write("swapped.key", w.server.cert_pem)),
        "wrong-pem-type",
        Severity.ERROR,
    ),
    (
        "key bundled into the chain file",
        lambda w: check_material(w.server.cert_pem + w.server.key_pem, role="server"),
        "wrong-pem-type",
        Severity.WARNING,
    ),
    (
        "two certificates where one belongs",
        lambda w: check_pem_file(b.pem(w.server, w.root), "certificate"),
        "too-many-objects",
        Severity.WARNING,
    ),
    (
        "two keys in one key file",
        lambda w: check_key_file(w.server.key_pem + w.client.key_pem),
        "too-many-objects",
        Severity.WARNING,
    ),
    (
        "encrypted key, no passphrase",
        lambda w: check_key_file(b.key_pem(w.server.key, b"s3cret")),
        "key-encrypted",
        Severity.ERROR,
    ),
    (
        "encrypted key, wrong passphrase",
        lambda w: check_key_file(b.key_pem(w.server.key, b"s3cret"), passphrase=b"nope"),
        "key-wrong-passphrase",
        Severity.ERROR,
    ),
    (
        "key encrypted the traditional OpenSSL way (Proc-Type: 4,ENCRYPTED, one MD5 round)",
        lambda w: check_key_file(w.server.key.private_bytes(
            b.serialization.Encoding.PEM, b.serialization.PrivateFormat.TraditionalOpenSSL,
            b.serialization.BestAvailableEncryption(b"s3cret"))),
        "key-weak-kdf",
        Severity.WARNING,
    ),
    (
        "key readable by group",
        lambda w: check_key_file(w.write("open.key", w.server.key_pem, 0o640)),
        "key-permissions",
        Severity.WARNING,
    ),
    (
        "key of another certificate",
        lambda w: check_material(w.server.cert_pem, w.client.key_pem, role="server"),
        "key-mismatch",
        Severity.ERROR,
    ),
    ("expired leaf", _expired, "expired", Severity.ERROR),
    (
        "revoked by its issuer's CRL",
        lambda w: check_material(w.server.cert_pem, role="server", crl=_crl(w.root, w.server)),
        "revoked",
        Severity.ERROR,
    ),
    (
        "not yet valid (clock skew)",
        lambda w: _server(w, _leaf(w, not_before=NOW() + dt.timedelta(hours=2))),
        "not-yet-valid",
        Severity.ERROR,
    ),
    (
        "expiring in 5 days",
        lambda w: _server(
            w, _leaf(w, not_before=NOW() - dt.timedelta(days=85), not_after=NOW() + dt.timedelta(days=5))
        ),
        "expiring-soon",
        Severity.WARNING,
    ),
    (
        "24h cert past 2/3 of its life",
        lambda w: _server(
            w, _leaf(w, not_before=NOW() - dt.timedelta(hours=20), not_after=NOW() + dt.timedelta(hours=4))
        ),
        "expiring-soon",
        Severity.WARNING,
    ),
    ("CN-only server certificate", lambda w: _server(w, _leaf(w, sans=None)), "cn-only", Severity.ERROR),
    (
        "CN-only client certificate",
        lambda w: _client(w, _leaf(w, cn="web", sans=None, eku=[b.CLIENT_AUTH])),
        "cn-only",
        Severity.WARNING,
    ),
    (
        "dial 127.0.0.1, SAN only DNS:localhost (q1)",
        lambda w: _server(w, _leaf(w, sans=["DNS:localhost"]), host="127.0.0.1"),
        "name-mismatch",
        Severity.ERROR,
    ),
    (
        "dial localhost, SAN only IP:127.0.0.1 (q2)",
        lambda w: _server(w, _leaf(w, sans=["IP:127.0.0.1"]), host="localhost"),
        "name-mismatch",
        Severity.ERROR,
    ),
    (
        "CN-only, dial 127.0.0.1 (f2)",
        lambda w: _server(w, _leaf(w, sans=None), host="127.0.0.1"),
        "name-mismatch",
        Severity.ERROR,
    ),
    (
        "server cert with clientAuth only (j)",
        lambda w: _server(w, _leaf(w, eku=[b.CLIENT_AUTH])),
        "wrong-eku",
        Severity.ERROR,
    ),
    (
        "client cert with serverAuth only (k)",
        lambda w: _client(w, _leaf(w, cn="web", eku=[b.SERVER_AUTH])),
        "wrong-eku",
        Severity.ERROR,
    ),
    ("no EKU extension", lambda w: _server(w, _leaf(w, eku=None)), "eku-missing", Severity.INFO),
    (
        "keyUsage without digitalSignature",
        lambda w: _server(w, _leaf(w, key_usage=b.key_usage(key_encipherment=True))),
        "key-usage-digital-signature",
        Severity.ERROR,
    ),
    (
        "RSA server without keyEncipherment",
        lambda w: _server(w, _leaf(w, key_kind="rsa2048", key_usage=b.key_usage(digital_signature=True))),
        "key-usage-key-encipherment",
        Severity.WARNING,
    ),
    (
        "leaf with keyCertSign",
        lambda w: _server(w, _leaf(w, key_usage=b.key_usage(digital_signature=True, key_cert_sign=True))),
        "leaf-can-sign",
        Severity.WARNING,
    ),
    (
        "leaf signed by a CA:FALSE intermediate (o3)",
        lambda w: (lambda i: check_material(b.pem(b.make_leaf(i), i), role="server", trust=w.root.cert_pem))(
            b.make_leaf(w.root, "fake-intermediate")
        ),
        "issuer-not-ca",
        Severity.ERROR,
    ),
    (
        "intermediate with keyCertSign but CA:FALSE (o4)",
        lambda w: (lambda i, leaf: check_material(b.pem(leaf, i), role="server", trust=w.root.cert_pem))(
            *_intermediate_world(w, ca=False)
        ),
        "issuer-not-ca",
        Severity.ERROR,
    ),
    (
        "trust anchor is CA:FALSE (o)",
        lambda w: (lambda r: check_material(b.make_leaf(r).cert_pem, role="server", trust=r.cert_pem))(
            b.make_ca("Not a CA", ca=False)
        ),
        "issuer-not-ca",
        Severity.WARNING,
    ),
    (
        "chain file lacks the intermediate (p)",
        lambda w: (
            lambda i, leaf: check_material(leaf.cert_pem, role="server", trust=w.root.cert_pem, known_cas=[i.cert_pem])
        )(*_intermediate_world(w)),
        "missing-intermediate",
        Severity.ERROR,
    ),
    (
        "intermediate before the leaf",
        lambda w: (lambda i, leaf: check_material(b.pem(i, leaf), leaf.key_pem, role="server", trust=w.root.cert_pem))(
            *_intermediate_world(w)
        ),
        "chain-order",
        Severity.ERROR,
    ),
    (
        "chain carries the root",
        lambda w: check_material(b.pem(w.server, w.root), role="server", trust=w.root.cert_pem),
        "chain-includes-root",
        Severity.INFO,
    ),
    (
        "signed by another CA (d, c)",
        lambda w: check_material(w.server.cert_pem, role="server", trust=b.make_ca("Other CA").cert_pem),
        "chain-untrusted",
        Severity.ERROR,
    ),
    (
        "trust bundle lacks the peer's CA",
        lambda w: check_trust_bundle(b.make_ca("Other CA").cert_pem, peer=w.client.cert_pem, role="client"),
        "chain-untrusted",
        Severity.ERROR,
    ),
    (
        "intermediate lacks keyUsage keyCertSign, only a verifier sees it",
        lambda w: (lambda i, leaf: check_material(b.pem(leaf, i), role="server", trust=w.root.cert_pem))(
            *_intermediate_world(w, key_cert_sign=False)
        ),
        "issuer-not-ca",
        Severity.ERROR,
    ),
    ("RSA-1024 leaf", lambda w: _server(w, _leaf(w, key_kind="rsa1024")), "weak-key", Severity.ERROR),
    ("DSA leaf", lambda w: _server(w, _leaf(w, key_kind="dsa1024")), "weak-key", Severity.ERROR),
    (
        "SPIFFE ID written as a DNS SAN (cfssl)",
        lambda w: _server(w, _leaf(w, sans=["DNS:localhost", "DNS:spiffe://example.org/api"])),
        "spiffe-id-as-dns",
        Severity.ERROR,
    ),
    (
        "SVID with two URI SANs (X509-SVID 2)",
        lambda w: _client(w, _leaf(w, cn="web", sans=["URI:spiffe://example.org/a", "URI:spiffe://example.org/b"])),
        "spiffe-svid",
        Severity.ERROR,
    ),
    (
        "keyEncipherment on an ECDSA key (RFC 8813)",
        lambda w: _server(w, _leaf(w, key_usage=b.key_usage(digital_signature=True, key_encipherment=True))),
        "key-usage-ecdsa-encipherment",
        Severity.WARNING,
    ),
    (
        "CA whose basicConstraints is not critical (easy-rsa)",
        lambda w: (lambda i, leaf: check_material(b.pem(leaf, i), role="server", trust=w.root.cert_pem))(
            *_intermediate_world(w, bc_critical=False)
        ),
        "ca-basic-constraints-not-critical",
        Severity.WARNING,
    ),
    ("P-192 leaf", lambda w: _server(w, _leaf(w, key_kind="ec192")), "weak-key", Severity.ERROR),
    (
        "SHA-1 signed leaf",
        lambda w: (
            lambda r: check_material(b.make_leaf(r, signature_hash="sha1").cert_pem, role="server", trust=r.cert_pem)
        )(b.make_ca("RSA CA", key_kind="rsa2048")),
        "weak-signature",
        Severity.ERROR,
    ),
    (
        "MD5 signed leaf",
        lambda w: (
            lambda r: check_material(b.make_leaf(r, signature_hash="md5").cert_pem, role="server", trust=r.cert_pem)
        )(b.make_ca("RSA CA", key_kind="rsa2048")),
        "weak-signature",
        Severity.ERROR,
    ),
    (
        "empty trust bundle",
        lambda w: check_trust_bundle(w.write("empty-ca.pem", b"")),
        "trust-bundle-empty",
        Severity.ERROR,
    ),
    (
        "leaf in the trust bundle",
        lambda w: check_trust_bundle(b.pem(w.root, w.server)),
        "trust-bundle-not-ca",
        Severity.WARNING,
    ),
    (
        "expired CA in the trust bundle",
        lambda w: check_trust_bundle(
            b.make_ca(
                "Old CA", not_before=NOW() - dt.timedelta(days=400), not_after=NOW() - dt.timedelta(days=2)
            ).cert_pem
        ),
        "trust-ca-expired",
        Severity.ERROR,
    ),
]


@pytest.mark.parametrize(("case", "expected_id", "severity"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_finding(world: World, case: Case, expected_id: str, severity: Severity) -> None:
    findings = case(world)
    assert expected_id in ids(findings), findings
    assert ids(findings)[expected_id] is severity
    finding = next(f for f in findings if f.id == expected_id)
    assert finding.message.endswith(".") and "\n" not in finding.message
    assert finding.subject


def test_chain_rejected_catches_what_no_specific_check_explains(world: World) -> None:
    # An intermediate with a pathLenConstraint of 0 that issues another CA: no dedicated check,
    # so the strict verifier's reason is reported.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    inter = b.make_ca("Issuing CA", issuer=world.root)
    key = b.make_key()
    sub = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Sub CA")]))
        .issuer_name(inter.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(days=1))
        .not_valid_after(NOW() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(b.key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter.key.public_key()), critical=False)
        .sign(inter.key, hashes.SHA256())
    )
    # Re-make the intermediate with pathLen 0.
    limited = (
        x509.CertificateBuilder()
        .subject_name(inter.cert.subject)
        .issuer_name(world.root.cert.subject)
        .public_key(inter.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW() - dt.timedelta(days=1))
        .not_valid_after(NOW() + dt.timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(b.key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter.key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(world.root.key.public_key()), critical=False)
        .sign(world.root.key, hashes.SHA256())
    )
    leaf = b.make_leaf(b.Material(sub, key))
    chain = leaf.cert_pem + b.Material(sub, key).cert_pem + b.Material(limited, inter.key).cert_pem
    findings = check_material(chain, role="server", trust=world.root.cert_pem, host="localhost")
    assert ids(findings) == {"chain-rejected": Severity.ERROR}, findings


def test_every_finding_id_is_tested_and_documented() -> None:
    from grpcpki.diagnosis.probe import PROBE_FINDINGS

    tested = {c[2] for c in CASES} | {"chain-rejected"}
    assert tested == set(FINDINGS) - set(PROBE_FINDINGS)
    catalogue = (Path(__file__).resolve().parents[2] / "docs" / "failures.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", catalogue, re.M))
    assert documented == set(FINDINGS)


# --------------------------------------------------------------------------- details worth pinning


def test_name_mismatch_names_both_sides(world: World) -> None:
    leaf = b.make_leaf(world.root, sans=["DNS:localhost"])
    [finding] = [f for f in _server(world, leaf, host="127.0.0.1", name="api", managed=True) if f.id == "name-mismatch"]
    assert "127.0.0.1" in finding.message and "DNS:localhost" in finding.message
    # The inventory's own certificate: the fix keeps its names, adds the one dialed, supersedes it.
    assert finding.fix == "grpcpki issue server api --dns localhost --ip 127.0.0.1 --replace"
    # Anyone else's certificate (not the inventory's NAME): never --replace, which would supersede
    # whatever certificate the PKI holds under that name.
    [foreign] = [f for f in _server(world, leaf, host="127.0.0.1", name="api") if f.id == "name-mismatch"]
    assert foreign.fix == "grpcpki issue server api --dns localhost --ip 127.0.0.1"


@pytest.mark.parametrize(
    ("sans", "host", "ok"),
    [
        (["DNS:*.example.com"], "api.example.com", True),
        (["DNS:*.example.com"], "example.com", False),
        (["DNS:*.example.com"], "a.b.example.com", False),
        (["DNS:localhost"], "LocalHost", True),
        (["IP:::1"], "[::1]", True),
        (["URI:spiffe://example.org/x"], "localhost", False),  # any SAN disables the CN fallback
        (None, "localhost", True),  # CN fallback for DNS targets (f)
        (None, "127.0.0.1", False),  # ...never for IP targets (f2)
    ],
    ids=lambda v: str(v),
)
def test_matches_host_follows_grpc(world: World, sans: list[str] | None, host: str, ok: bool) -> None:
    assert matches_host(b.make_leaf(world.root, "localhost", sans=sans).cert_pem, host) is ok


def test_expiry_window_is_configurable(world: World) -> None:
    leaf = b.make_leaf(world.root, not_after=NOW() + dt.timedelta(days=60))
    assert "expiring-soon" not in ids(_server(world, leaf))
    assert "expiring-soon" in ids(_server(world, leaf, expiry_window=dt.timedelta(days=90)))


def test_now_can_be_passed(world: World) -> None:
    later = NOW() + dt.timedelta(days=400)
    assert "expired" in ids(_server(world, world.server, now=later))


def test_correct_passphrase_decrypts(world: World) -> None:
    from grpcpki.engine.keys import encrypted_private_key_pem

    # Encrypted as grpcpki writes keys (cryptography's BestAvailableEncryption uses 2,048 PBKDF2
    # iterations: key-weak-kdf).
    encrypted = encrypted_private_key_pem(world.server.key, b"s3cret")
    assert check_material(world.server.cert_pem, encrypted, role="server", passphrase=b"s3cret") == []
    weak = b.key_pem(world.server.key, b"s3cret")
    assert [f.id for f in check_material(world.server.cert_pem, weak, role="server", passphrase=b"s3cret")] == [
        "key-weak-kdf"]


def test_mismatch_fix_names_the_inventory_name(world: World) -> None:
    [finding] = check_material(world.server.cert_pem, world.client.key_pem, name="api")
    assert finding.id == "key-mismatch" and finding.fix and "grpcpki renew api" in finding.fix


def test_finding_to_dict_is_json_ready(world: World) -> None:
    import json

    [finding] = check_material(world.server.cert_pem, world.client.key_pem)
    assert json.loads(json.dumps(finding.to_dict()))["severity"] == "error"


def test_bad_role_is_a_programming_error(world: World) -> None:
    with pytest.raises(ValueError, match="role"):
        check_material(world.server.cert_pem, role="admin")
