"""Two ca-server replicas as on two machines: each with its OWN PKI directory (a copy of the
operator's: the same CA certificate and key), sharing one PostgreSQL inventory (`--db`).

Nothing local is shared between them, not a file and not a file lock: every race below is
decided by the database (its advisory writer lock, which `Pki.transaction()` takes with --db,
and its constraints). One fleet per module: the tests use distinct names and run in file order;
the last one kills a replica.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from caservice_support import CaService, start_ca_server, stop_all
from grpcpki.caservice import client
from grpcpki.caservice.server import CaServer, CaServerConfig
from grpcpki.engine import workload
from grpcpki.engine.enroll_store import AuditRow
from grpcpki.engine.enrollment import create_token, store_for
from grpcpki.engine.pki import Pki
from grpcpki.engine.revocation import revoked_serials
from grpcpki.greeter.files import TlsFiles
from pg_support import PostgresServer, postgres_down, throwaway_database
from support import assert_clean_error, assert_threads_end, run_grpcpki, threads_started_since, tree

RATE = 3  # --rate-limit of both replicas, per identity and hour


@dataclass
class Fleet:
    url: str
    operator: Path  # a third PKI directory on the same database: the operator's laptop
    machines: dict[str, Path]
    one: CaService
    two: CaService
    ca_pem: bytes

    def operator_pki(self) -> Pki:
        return Pki.open(self.operator)

    def grpcpki(self, pki: Path, *args: str) -> str:
        result = run_grpcpki("--db", self.url, "--pki", str(pki), *args, cwd=pki.parent)
        assert result.code == 0, result.output
        return result.stdout


@pytest.fixture(scope="module")
def fleet(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with throwaway_database(postgres) as database:
        url = postgres.url(database)
        # In-process engine calls (tokens, checks) use the shared inventory too.
        patch = pytest.MonkeyPatch()
        patch.setenv("GRPCPKI_DB", url)
        tmp = tmp_path_factory.mktemp("replicas")
        operator = tmp / "operator"
        started: list[CaService] = []
        try:
            for args in (("init-ca", "--name", "Service CA"), ("issue", "server", "localhost")):
                result = run_grpcpki("--db", url, "--pki", str(operator), *args, cwd=tmp)
                assert result.code == 0, result.output
            # What an operator does for each new replica machine (docs/team.md): copy the PKI directory.
            machines = {m: tmp / m for m in ("machine-a", "machine-b")}
            for path in machines.values():
                shutil.copytree(operator, path)
            for replica, machine in (("r1", "machine-a"), ("r2", "machine-b")):
                started.append(start_ca_server(tmp, machines[machine], "--rate-limit", f"{RATE}/1h",
                                               replica=replica, env={"GRPCPKI_DB": url}))
            yield Fleet(url, operator, machines, started[0], started[1], (operator / "ca.crt").read_bytes())
        finally:
            stop_all(started)
            patch.undo()


def _enroll_or_code(target: str, token: str, name: str, ca_pem: bytes) -> client.Response | str:
    try:
        return client.enroll(target, token=token, csr_pem=workload.new_key_and_csr(name).csr_pem, kind="",
                             ca_pem=ca_pem)
    except client.CaServiceError as exc:
        return exc.code


def test_twenty_concurrent_enrollments_split_across_machines(fleet: Fleet) -> None:
    pki = fleet.operator_pki()
    tokens = [create_token(pki, f"svc-{i:02d}", "client").secret for i in range(20)]

    def enroll(i: int) -> client.Response:
        target = (fleet.one, fleet.two)[i % 2].enroll
        csr = workload.new_key_and_csr(f"svc-{i:02d}").csr_pem
        return client.enroll(target, token=tokens[i], csr_pem=csr, kind="client", ca_pem=fleet.ca_pem)

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(enroll, range(20)))
    serials = [r.serial for r in replies]
    assert len(set(serials)) == 20
    assert sorted(r.name for r in replies) == [f"svc-{i:02d}" for i in range(20)]
    for reply in replies:  # each caller got its own certificate, not a neighbour's
        leaf = x509.load_pem_x509_certificates(reply.chain_pem)[0]
        assert f"{leaf.serial_number:x}" == reply.serial
    pki = fleet.operator_pki()
    enrolled = [r for r in pki.records() if r.name.startswith("svc-")]
    assert sorted(r.serial for r in enrolled) == sorted(serials)
    audit = [a for a in store_for(pki).audit() if a.name.startswith("svc-")]
    assert sorted(a.serial for a in audit) == sorted(serials)
    assert {a.replica for a in audit} == {"r1", "r2"}
    # Each machine wrote the files of what it signed, in its own directory only.
    by_replica = {a.name: a.replica for a in audit}
    for name, replica in by_replica.items():
        here, there = ("machine-a", "machine-b") if replica == "r1" else ("machine-b", "machine-a")
        assert (fleet.machines[here] / "certs" / name / "chain.pem").is_file()
        assert not (fleet.machines[there] / "certs" / name).exists()


def test_one_token_is_spent_once_across_machines(fleet: Fleet) -> None:
    token = create_token(fleet.operator_pki(), "web", "client").secret
    targets = [(fleet.one, fleet.two)[i % 2].enroll for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda t: _enroll_or_code(t, token, "web", fleet.ca_pem), targets))
    assert sorted(o if isinstance(o, str) else "ok" for o in outcomes) == ["UNAUTHENTICATED"] * 5 + ["ok"]
    row = next(t for t in store_for(fleet.operator_pki()).tokens() if t.name == "web")
    assert row.used_serial in {o.serial for o in outcomes if not isinstance(o, str)}


def test_the_rate_limit_holds_across_machines(fleet: Fleet) -> None:
    """Twice the limit for one identity, raced through both replicas at once. Each replica's file
    lock guards only its own directory: only the database's advisory lock, taken by every store
    transaction on a shared inventory, makes the count-then-issue atomic across machines."""
    pki = fleet.operator_pki()
    tokens = [create_token(pki, "hot", "client", replace=True).secret for _ in range(2 * RATE)]
    targets = [(fleet.one, fleet.two)[i % 2].enroll for i in range(2 * RATE)]
    with ThreadPoolExecutor(max_workers=2 * RATE) as pool:
        outcomes = list(pool.map(lambda args: _enroll_or_code(args[0], args[1], "hot", fleet.ca_pem),
                                 zip(targets, tokens, strict=True)))
    codes = sorted(o if isinstance(o, str) else "ok" for o in outcomes)
    assert codes == ["RESOURCE_EXHAUSTED"] * RATE + ["ok"] * RATE, codes
    audit: list[AuditRow] = store_for(fleet.operator_pki()).audit("hot")
    assert len(audit) == RATE


def test_a_revocation_anywhere_is_in_every_replicas_crl(fleet: Fleet) -> None:
    token = create_token(fleet.operator_pki(), "doomed", "client").secret
    reply = client.enroll(fleet.one.enroll, token=token, csr_pem=workload.new_key_and_csr("doomed").csr_pem,
                          kind="", ca_pem=fleet.ca_pem)
    serial = int(reply.serial, 16)
    # Revoked from the operator's laptop: a third PKI directory, where nothing was enrolled.
    fleet.grpcpki(fleet.operator, "revoke", "doomed", "--reason", "keyCompromise")
    # Both replicas serve the database's newest CRL, though neither signed it.
    for service in (fleet.one, fleet.two):
        crl = x509.load_pem_x509_crl(client.crl(service.enroll, ca_pem=fleet.ca_pem))
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    # ...and brought their own crl.pem up to date, for `serve` and peers on that machine.
    assert serial in revoked_serials(fleet.machines["machine-a"])
    assert serial in revoked_serials(fleet.machines["machine-b"])

    # A replica whose CA cannot sign (its key unreachable: here, gone from its directory) still
    # serves the stored CRL and the trust bundle, and refuses enrollments with the reason.
    keyless = fleet.machines["machine-a"].parent / "machine-keyless"
    shutil.copytree(fleet.operator, keyless)
    for key in (keyless / "ca").rglob("*.key"):
        key.unlink()
    material = Pki.open(keyless).material("localhost")
    server = CaServer(
        CaServerConfig(listen="127.0.0.1:0", enroll_listen="127.0.0.1:0", replica="keyless", grace=0,
                       files=TlsFiles(chain=material.chain_path, key=material.key_path, ca=material.trust_path)),
        lambda: Pki.open(keyless), on_event=lambda _event: None,
    )
    before = set(threading.enumerate())
    bound = server.start()
    workers: list[threading.Thread] = []
    try:
        target = f"127.0.0.1:{bound.tls_port}"
        crl = x509.load_pem_x509_crl(client.crl(target, ca_pem=fleet.ca_pem))
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
        assert client.trust_bundle(target, ca_pem=fleet.ca_pem).trust_bundle_pem == fleet.ca_pem
        late = create_token(fleet.operator_pki(), "unsigned", "client").secret
        with pytest.raises(client.CaServiceError) as refused:
            client.enroll(target, token=late, csr_pem=workload.new_key_and_csr("unsigned").csr_pem, kind="",
                          ca_pem=fleet.ca_pem)
        assert "CA key" in refused.value.message and "\n" not in refused.value.message
        workers = threads_started_since(before, "ca-server_")
        assert workers
    finally:
        server.stop(0)
    # The handler pool is ca-server's own (greeter/server.py worker_pool): stop() ends its threads.
    assert_threads_end(workers)
    # The refused request spent nothing: a replica that can sign enrolls with the same token.
    assert client.enroll(fleet.two.enroll, token=late, csr_pem=workload.new_key_and_csr("unsigned").csr_pem,
                         kind="", ca_pem=fleet.ca_pem).name == "unsigned"


def test_a_database_outage_is_unavailable_with_its_cause_and_spends_nothing(
    fleet: Fleet, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Both replicas up, their database down: each call reconnects once, then answers UNAVAILABLE
    naming the database (not the replica's address), issues nothing and spends no token; the same
    token enrolls once the database is back, through the same long-running replicas."""
    token = create_token(fleet.operator_pki(), "outage", "client").secret
    with postgres_down(postgres):
        for service in (fleet.one, fleet.two):
            with pytest.raises(client.CaServiceError) as refused:
                client.enroll(service.enroll, token=token, csr_pem=workload.new_key_and_csr("outage").csr_pem,
                              kind="", ca_pem=fleet.ca_pem)
            assert refused.value.code == "UNAVAILABLE", refused.value.message
            assert "is up but cannot reach its database" in refused.value.message
            assert refused.value.hint is not None and "no token was spent" in refused.value.hint
        # What a workload's operator sees: one line, exit 1, nothing written.
        out = tmp_path / "outage"
        result = run_grpcpki("enroll", "--ca-server", fleet.one.enroll, "--token", token, "--out", str(out),
                             "--ca-bundle", str(fleet.operator / "ca.crt"), cwd=tmp_path)
        assert_clean_error(result, "is up but cannot reach its database")
        assert tree(out) == []
    reply = client.enroll(fleet.two.enroll, token=token, csr_pem=workload.new_key_and_csr("outage").csr_pem, kind="",
                          ca_pem=fleet.ca_pem)
    assert reply.name == "outage"
    assert fleet.one.proc.poll() is None and fleet.two.proc.poll() is None


def test_one_replica_killed_the_other_keeps_enrolling_and_renewing(fleet: Fleet) -> None:
    # A workload enrolled through machine A...
    material = workload.new_key_and_csr("mover")
    token = create_token(fleet.operator_pki(), "mover", "client").secret
    first = client.enroll(fleet.one.enroll, token=token, csr_pem=material.csr_pem, kind="", ca_pem=fleet.ca_pem)
    # ...which then dies without a chance to clean up (its advisory lock dies with its sessions).
    assert fleet.one.stop(signal.SIGKILL) == -signal.SIGKILL
    # Machine B renews it (the certificate's files live on A: B supersedes the row, keeps its own files)...
    fresh = workload.new_key_and_csr("mover")
    renewed = client.renew(fleet.two.mtls, csr_pem=fresh.csr_pem, key_pem=material.key_pem,
                           chain_pem=first.chain_pem, ca_pem=fleet.ca_pem)
    assert renewed.name == "mover" and renewed.serial != first.serial
    # ...and keeps enrolling new workloads.
    late = create_token(fleet.operator_pki(), "late", "client").secret
    reply = client.enroll(fleet.two.enroll, token=late, csr_pem=workload.new_key_and_csr("late").csr_pem, kind="",
                          ca_pem=fleet.ca_pem)
    assert reply.name == "late"
    pki = fleet.operator_pki()
    old = pki.inventory.by_serial(first.serial)
    assert old is not None and old.status == "superseded"
    assert pki.find("mover").serial == renewed.serial
    assert client.trust_bundle(fleet.two.enroll, ca_pem=fleet.ca_pem).trust_bundle_pem == fleet.ca_pem
