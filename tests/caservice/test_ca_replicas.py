"""Two ca-server replicas on one store: concurrent enrollments, a shared CRL, a replica lost.

The replicas share one PKI directory on this machine (its SQLite inventory, file lock and CA
key). The PostgreSQL variant (replicas on one database) waits for the SQLAlchemy inventory.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509

from caservice_support import Setup
from grpcpki.caservice import client
from grpcpki.engine import workload
from grpcpki.engine.enrollment import create_token, store_for
from grpcpki.engine.pki import Pki


def test_two_replicas_share_one_store(setup: Setup) -> None:
    one, two = setup.start(replica="r1"), setup.start(replica="r2")
    ca_pem = (setup.pki / "ca.crt").read_bytes()
    pki = Pki.open(setup.pki)
    tokens = [create_token(pki, f"svc-{i:02d}", "client").secret for i in range(20)]

    def enroll(i: int) -> client.Response:
        target = (one, two)[i % 2].enroll
        csr = workload.new_key_and_csr(f"svc-{i:02d}").csr_pem
        return client.enroll(target, token=tokens[i], csr_pem=csr, kind="client", ca_pem=ca_pem)

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(enroll, range(20)))
    serials = [r.serial for r in replies]
    assert len(set(serials)) == 20
    assert sorted(r.name for r in replies) == [f"svc-{i:02d}" for i in range(20)]
    for reply in replies:  # each caller got its own certificate, not a neighbour's
        leaf = x509.load_pem_x509_certificates(reply.chain_pem)[0]
        assert f"{leaf.serial_number:x}" == reply.serial
    pki = Pki.open(setup.pki)
    active = [r for r in pki.records() if r.kind == "client"]
    assert sorted(r.serial for r in active) == sorted(serials)
    audit = store_for(pki).audit()
    assert sorted(a.serial for a in audit) == sorted(serials)
    assert {a.replica for a in audit} == {"r1", "r2"}

    # A revocation made on the store is in the CRL that either replica serves.
    assert setup.cli("revoke", "svc-03").code == 0
    for service in (one, two):
        crl = x509.load_pem_x509_crl(client.crl(service.enroll, ca_pem=ca_pem))
        assert crl.get_revoked_certificate_by_serial_number(int(replies[3].serial, 16)) is not None

    # One replica dies mid-flight; the other keeps enrolling and serving the trust bundle.
    one.stop(signal.SIGKILL)
    late = create_token(Pki.open(setup.pki), "late", "client").secret
    reply = client.enroll(two.enroll, token=late, csr_pem=workload.new_key_and_csr("late").csr_pem, kind="",
                          ca_pem=ca_pem)
    assert reply.name == "late" and reply.serial not in serials
    assert client.trust_bundle(two.enroll, ca_pem=ca_pem).trust_bundle_pem == ca_pem


def test_one_token_spent_once_across_replicas(setup: Setup) -> None:
    one, two = setup.start(replica="r1"), setup.start(replica="r2")
    ca_pem = (setup.pki / "ca.crt").read_bytes()
    token = create_token(Pki.open(setup.pki), "web", "client").secret

    def attempt(i: int) -> str:
        try:
            client.enroll((one, two)[i % 2].enroll, token=token, csr_pem=workload.new_key_and_csr("web").csr_pem,
                          kind="", ca_pem=ca_pem)
            return "ok"
        except client.CaServiceError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes.count("ok") == 1
    assert sorted(outcomes) == ["UNAUTHENTICATED"] * 5 + ["ok"]
