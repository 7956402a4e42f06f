"""Issue 13's team setup as it runs: two ca-server replicas, as on two machines, sharing one
PostgreSQL inventory AND one PKCS#11 token (SoftHSM2), with no CA key file anywhere.

Each replica has its own copy of the operator's PKI directory, which holds only the CA's
certificate and its `*.key.uri`: every leaf and every CRL is signed on the token, by two
processes logged in to it at once. One fleet per module (the suite is over its time budget).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from caservice_support import CaService, start_ca_server, stop_all
from grpcpki.caservice import client
from grpcpki.engine import workload
from grpcpki.engine.enrollment import create_token
from grpcpki.engine.pki import Pki
from pg_support import PostgresServer, restart_postgres, throwaway_database
from support import run_grpcpki

# The SoftHSM2 helpers of tests/hsm (not a conftest there, so not on sys.path unless that folder is collected).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hsm"))
from hsm_support import MODULE, PIN, SoftHsm, pem_private_keys, require, uri  # noqa: E402

ENROLLMENTS = 8  # split across both replicas, all at once


@dataclass
class TokenFleet:
    tmp: Path
    operator: Path
    machines: list[Path]
    replicas: list[CaService]
    env: dict[str, str]  # token config, module, PIN file and database: what each machine has
    ca_pem: bytes


@pytest.fixture(scope="module")
def token_fleet(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenFleet]:
    require("SoftHSM2 is not installed (no softhsm2-util on PATH)", shutil.which("softhsm2-util") is not None)
    require(f"SoftHSM2's PKCS#11 module {MODULE} is missing", MODULE.is_file())
    require("python-pkcs11 is not installed", importlib.util.find_spec("pkcs11") is not None)
    tmp = tmp_path_factory.mktemp("token-replicas")
    (tmp / "softhsm" / "tokens").mkdir(parents=True)
    conf = tmp / "softhsm" / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'softhsm' / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    pin_file = tmp / "softhsm" / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    hsm = SoftHsm(tmp / "softhsm", conf, pin_file)
    hsm.init_token("grpcpki-test")

    with throwaway_database(postgres) as database:
        url = postgres.url(database)
        env = hsm.env(GRPCPKI_DB=url)
        patch = pytest.MonkeyPatch()
        patch.setenv("GRPCPKI_DB", url)  # in-process token creation writes to the shared inventory
        operator = tmp / "operator"
        started: list[CaService] = []
        try:
            for args in (("init-ca", "--name", "Token CA", "--key-uri", uri("ca")), ("issue", "server", "localhost")):
                result = run_grpcpki("--pki", str(operator), *args, cwd=tmp, env=env)
                assert result.code == 0 and PIN not in result.output, result.output
            machines = [tmp / "machine-a", tmp / "machine-b"]
            for machine, replica in zip(machines, ("r1", "r2"), strict=True):
                shutil.copytree(operator, machine)
                started.append(start_ca_server(tmp, machine, replica=replica, env=env))
            yield TokenFleet(tmp, operator, machines, started, env, (operator / "ca.crt").read_bytes())
        finally:
            stop_all(started)
            patch.undo()


def _openssl_verify(ca: Path, leaf: Path, crl: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), "-crl_check", "-CRLfile", str(crl), str(leaf)],
                          capture_output=True, text=True, timeout=30)


def test_two_replicas_sign_on_one_token_and_serve_its_crl(token_fleet: TokenFleet) -> None:
    fleet = token_fleet
    # No CA key file anywhere: each directory names the key on the token, nothing more.
    for directory in (fleet.operator, *fleet.machines):
        assert sorted(p.name for p in (directory / "ca").rglob("*") if p.is_file()) == ["root.crt", "root.key.uri"], \
            sorted(str(p) for p in (directory / "ca").rglob("*"))

    pki = Pki.open(fleet.operator)
    names = [f"hsm-{i}" for i in range(ENROLLMENTS)]
    tokens = [create_token(pki, name, "client").secret for name in names]

    def enroll(i: int) -> client.Response:
        csr = workload.new_key_and_csr(names[i]).csr_pem
        return client.enroll(fleet.replicas[i % 2].enroll, token=tokens[i], csr_pem=csr, kind="client",
                             ca_pem=fleet.ca_pem)

    with ThreadPoolExecutor(max_workers=ENROLLMENTS) as pool:
        replies = list(pool.map(enroll, range(ENROLLMENTS)))
    assert len({r.serial for r in replies}) == ENROLLMENTS
    assert sorted(r.name for r in replies) == names
    # Both replicas signed (each machine keeps the files of what it issued).
    for machine in fleet.machines:
        assert any((machine / "certs" / name).is_dir() for name in names), machine

    # The operator revokes one from a third directory: the CRL is signed on the same token.
    doomed = next(r for r in replies if r.name == "hsm-0")
    result = run_grpcpki("--pki", str(fleet.operator), "revoke", "hsm-0", "--reason", "keyCompromise",
                         cwd=fleet.tmp, env=fleet.env)
    assert result.code == 0 and PIN not in result.output, result.output
    ca = x509.load_pem_x509_certificate(fleet.ca_pem)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    crls = []
    for service in fleet.replicas:
        crl_pem = client.crl(service.enroll, ca_pem=fleet.ca_pem)
        crl = x509.load_pem_x509_crl(crl_pem)
        assert crl.is_signature_valid(ca_key)
        assert crl.get_revoked_certificate_by_serial_number(int(doomed.serial, 16)) is not None
        crls.append(crl_pem)
    assert crls[0] == crls[1]

    if shutil.which("openssl"):  # the independent check: chains and the CRL as OpenSSL sees them
        crl_file = fleet.tmp / "served-crl.pem"
        crl_file.write_bytes(crls[0])
        for reply in replies:
            leaf = fleet.tmp / f"{reply.name}.pem"
            leaf.write_bytes(reply.chain_pem)
            checked = _openssl_verify(fleet.operator / "ca.crt", leaf, crl_file)
            if reply.name == "hsm-0":
                assert checked.returncode != 0 and "certificate revoked" in checked.stdout + checked.stderr
            else:
                assert checked.returncode == 0 and ": OK" in checked.stdout, checked.stdout + checked.stderr

    # After all that signing, still no PEM private key of the CA under any directory.
    ca_spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for directory in (fleet.operator, *fleet.machines):
        assert ca_spki not in pem_private_keys(directory).values()
    for service in fleet.replicas:
        assert PIN not in service.stderr()



def test_replicas_reconnect_after_the_database_restarts(token_fleet: TokenFleet, postgres: PostgresServer) -> None:
    """Every ca-server worker thread holds a database connection; a PostgreSQL restart cuts them
    all. The next calls must reconnect, not fail with UNKNOWN until the replica is restarted."""
    fleet = token_fleet
    pki = Pki.open(fleet.operator)
    before = create_token(pki, "pre-restart", "client").secret
    pki.inventory.close()
    assert client.enroll(fleet.replicas[0].enroll, token=before, kind="", ca_pem=fleet.ca_pem,
                         csr_pem=workload.new_key_and_csr("pre-restart").csr_pem).name == "pre-restart"

    restart_postgres(postgres)

    pki = Pki.open(fleet.operator)
    tokens = {f"post-{i}": create_token(pki, f"post-{i}", "client").secret for i in range(4)}
    names = sorted(tokens)
    # Four calls per replica: more than one worker thread's stale connection gets exercised.
    for i, name in enumerate(names):
        reply = client.enroll(fleet.replicas[i % 2].enroll, token=tokens[name], kind="", ca_pem=fleet.ca_pem,
                              csr_pem=workload.new_key_and_csr(name).csr_pem)
        assert reply.name == name
    for service in fleet.replicas:
        x509.load_pem_x509_crl(client.crl(service.enroll, ca_pem=fleet.ca_pem))
        assert client.trust_bundle(service.enroll, ca_pem=fleet.ca_pem).trust_bundle_pem == fleet.ca_pem
