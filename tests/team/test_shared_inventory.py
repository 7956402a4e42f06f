"""One inventory test suite, two backends: the embedded SQLite file and a shared PostgreSQL
database (a real throwaway server, tests/pg_support.py: skipped with the reason outside CI,
a failure in CI). Through the engine's Inventory and through the real `grpcpki` entry point."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from grpcpki.engine.errors import AlreadyExistsError, InventoryError
from grpcpki.engine.inventory import Inventory, NewRecord
from grpcpki.engine.revocation import revoked_serials
from pg_support import PostgresServer, require_psycopg
from support import cli_env, run_grpcpki

SERIAL_159 = format((1 << 158) | 0xDEADBEEF, "x")  # 40 hex digits: far past BIGINT


def _inventory(tmp_path: Path, url: str | None) -> Inventory:
    return Inventory(tmp_path / "inventory.db", tmp_path, url=url)


def _record(serial: str, name: str, **changes: object) -> NewRecord:
    moment = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
    fields: dict[str, object] = dict(
        serial=serial, kind="server", name=name, subject=f"CN={name}", sans=[f"DNS:{name}"], issuer="CN=CA",
        not_before=moment, not_after=moment + timedelta(days=90), fingerprint="ab" * 32, key_type="ecdsa-p256",
        eku=["serverAuth"], ca_generation=1,
    )
    fields.update(changes)
    return NewRecord(**fields)  # type: ignore[arg-type]


def _env(url: str | None) -> dict[str, str]:
    return {"GRPCPKI_DB": url} if url else {}


def test_a_159_bit_serial_round_trips(tmp_path: Path, backend: str | None) -> None:
    inventory = _inventory(tmp_path, backend)
    try:
        added = inventory.add(_record(SERIAL_159.upper(), "web"))
        assert added.serial == SERIAL_159
        found = inventory.by_serial(SERIAL_159)
        assert found is not None and found.serial == SERIAL_159 and int(found.serial, 16) >= 1 << 158
        assert found.openssl_serial == SERIAL_159.upper()
        with pytest.raises(InventoryError, match="already in the inventory"):
            inventory.add(_record(SERIAL_159, "other"))
    finally:
        inventory.close()


def test_timestamps_are_utc_whatever_the_input_zone(tmp_path: Path, backend: str | None) -> None:
    inventory = _inventory(tmp_path, backend)
    try:
        plus_two = timezone_plus_two = datetime(2026, 12, 5, 12, 0, 0, tzinfo=timedelta_zone(2))
        inventory.add(_record("01", "web", not_before=plus_two, not_after=timezone_plus_two + timedelta(days=1)))
        found = inventory.active_leaf("web")
        assert found is not None
        assert found.not_before == datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
        assert found.not_before.utcoffset() == timedelta(0)
        listed = list(inventory.iter_listing())
        assert listed[0].not_after == datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
        assert listed[0].not_after.utcoffset() == timedelta(0)
        # An expiry filter compares instants, not text in some zone.
        assert inventory.count(expiring_before=datetime(2026, 12, 6, 11, 0, tzinfo=timedelta_zone(1))) == 0
        assert inventory.count(expiring_before=datetime(2026, 12, 6, 11, 1, tzinfo=timedelta_zone(1))) == 1
    finally:
        inventory.close()


def timedelta_zone(hours: int):  # noqa: ANN201 - a tzinfo
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_one_active_leaf_per_name_and_revoked_is_final(tmp_path: Path, backend: str | None) -> None:
    inventory = _inventory(tmp_path, backend)
    try:
        first = inventory.add(_record("01", "web"))
        with pytest.raises(AlreadyExistsError, match="'web' already exists"):
            inventory.add(_record("02", "web"))
        # Per kind: a client may share the server's name (revision 0002).
        client = inventory.add(_record("05", "web", kind="client"))
        assert inventory.active_leaf("web", "client") == client
        # The failed insert left a usable connection (PostgreSQL aborts a transaction on error).
        inventory.set_status(first.id, "revoked", revocation_reason="keyCompromise")
        second = inventory.add(_record("02", "web"))
        assert inventory.active_leaf("web", "server") == second
        with pytest.raises(InventoryError, match="revoked meanwhile"):
            inventory.set_status(first.id, "active")
        revoked = inventory.by_id(first.id)
        assert revoked is not None and revoked.status == "revoked" and revoked.revoked_at is not None
        # A batch item that fails rolls back to its savepoint; the rest of the transaction stands.
        with inventory.transaction():
            inventory.execute("SAVEPOINT item1")
            with pytest.raises(AlreadyExistsError):
                inventory.add(_record("03", "web"))
            inventory.execute("ROLLBACK TO item1")
            inventory.execute("RELEASE item1")
            inventory.add(_record("04", "api"))
        assert sorted(r.name for r in inventory.query()) == ["api", "web", "web"]
        inventory.set_meta("crl_number", "1")
        inventory.set_meta("crl_number", "2")
        assert inventory.get_meta("crl_number") == "2"
    finally:
        inventory.close()


def test_end_to_end_through_the_entry_point(tmp_path: Path, backend: str | None) -> None:
    pki = str(tmp_path / "pki")
    db = ["--db", backend] if backend else []
    assert run_grpcpki(*db, "--pki", pki, "init-ca").code == 0
    issued = run_grpcpki(*db, "--pki", pki, "issue", "server", "web")
    assert issued.code == 0, issued.output
    listed = run_grpcpki(*db, "--pki", pki, "list", "--json")
    assert listed.code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["status"]) for r in rows] == [("web", "active"), ("grpcpki CA", "active")]
    assert len(rows[0]["serial"]) >= 32
    revoked = run_grpcpki(*db, "--pki", pki, "revoke", "web")
    assert revoked.code == 0, revoked.output
    after = json.loads(run_grpcpki(*db, "--pki", pki, "list", "--all", "--json").stdout)
    assert [(r["name"], r["status"]) for r in after if r["name"] == "web"] == [("web", "revoked")]
    assert (tmp_path / "pki" / "inventory.db").exists() == (backend is None)
    if backend:
        # The rows are in PostgreSQL: the same database through GRPCPKI_DB sees them.
        env_listed = run_grpcpki("--pki", pki, "list", "--all", "--json", env=_env(backend))
        assert json.loads(env_listed.stdout) == after


def test_two_pki_directories_on_one_database_one_wins(tmp_path: Path, postgres: PostgresServer,
                                                      postgres_db: str) -> None:
    """Two operators (two PKI directories, two processes) issue the same name at once against
    one PostgreSQL inventory: one certificate, one clean refusal."""
    require_psycopg()
    url = postgres.url(postgres_db)
    first, second = tmp_path / "alice", tmp_path / "bob"
    assert run_grpcpki("--db", url, "--pki", str(first), "init-ca").code == 0
    shutil.copytree(first, second)  # bob gets the CA from alice (docs/team.md)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "grpcpki", "--db", url, "--pki", str(pki), "issue", "server", "web"],
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        for pki in (first, second)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refusal = next(err for code, err in results if code == 1)
    lines = [line for line in refusal.splitlines() if line.strip() and not line.startswith("waiting for")]
    assert lines[0].startswith("error: ") and "already exists" in lines[0], refusal
    assert "Traceback" not in refusal
    listed = json.loads(run_grpcpki("--db", url, "--pki", str(second), "list", "--json").stdout)
    assert [r["name"] for r in listed].count("web") == 1
    # A second CA on the same database is refused: it would sign what nobody trusts.
    third = run_grpcpki("--db", url, "--pki", str(tmp_path / "carol"), "init-ca")
    assert third.code == 1 and "already belongs to a CA" in third.stderr


def test_a_writer_waits_for_the_advisory_lock_and_names_its_holder(tmp_path: Path, postgres: PostgresServer,
                                                                   postgres_db: str) -> None:
    require_psycopg()
    import psycopg

    from grpcpki.engine.lock import ADVISORY_KEY

    url = postgres.url(postgres_db)
    pki = str(tmp_path / "pki")
    assert run_grpcpki("--db", url, "--pki", pki, "init-ca").code == 0
    with psycopg.connect(postgres.conninfo(postgres_db), autocommit=True,
                         application_name="grpcpki 4242@ops-laptop grpcpki renew") as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s, %s)", ADVISORY_KEY).fetchone() == (True,)
        result = run_grpcpki("--db", url, "--pki", pki, "--lock-timeout", "1s", "issue", "server", "web")
        assert result.code == 1, result.output
        assert "gave up after 1s waiting for PID 4242 (grpcpki renew on ops-laptop)" in result.stderr
        assert "shared inventory" in result.stderr
    # Released (the holder's session ended): the writer goes through.
    assert run_grpcpki("--db", url, "--pki", pki, "issue", "server", "web").code == 0


def test_a_bad_database_url_is_one_clear_error(tmp_path: Path) -> None:
    for url, fragment in (("mysql://x@127.0.0.1/pki", "SQLite or PostgreSQL"), ("not a url", "not a database URL")):
        result = run_grpcpki("--db", url, "--pki", str(tmp_path / "pki"), "list")
        assert result.code == 1 and fragment in result.stderr and "Traceback" not in result.output, result.output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = f"postgresql+psycopg://grpcpki@127.0.0.1:{port}/pki"
    result = run_grpcpki("--db", unreachable, "--pki", str(tmp_path / "pki"), "init-ca", env={"CI": os.environ.get("CI", "")})
    assert result.code == 1 and "cannot" in result.stderr and "Traceback" not in result.output, result.output


def test_an_operator_revokes_a_certificate_another_one_issued(tmp_path: Path, postgres: PostgresServer,
                                                              postgres_db: str) -> None:
    require_psycopg()
    url = postgres.url(postgres_db)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert run_grpcpki("--db", url, "--pki", str(alice), "init-ca").code == 0
    shutil.copytree(alice, bob)
    assert run_grpcpki("--db", url, "--pki", str(alice), "issue", "server", "web").code == 0
    serial = int(json.loads(run_grpcpki("--db", url, "--pki", str(alice), "list", "--json").stdout)[0]["serial"], 16)
    revoked = run_grpcpki("--db", url, "--pki", str(bob), "revoke", "web")
    assert revoked.code == 0, revoked.output
    assert serial not in revoked_serials(alice)  # alice's crl.pem was signed before bob revoked
    assert "revoked" in run_grpcpki("--db", url, "--pki", str(alice), "list", "--all").stdout
    # A command that opens alice's directory (`list` reads only rows) brings her crl.pem up to the
    # database's newest CRL: `serve` and her peers read the file. No CA key or writer lock needed.
    assert run_grpcpki("--db", url, "--pki", str(alice), "inspect", str(alice / "ca.crt")).code == 0
    assert serial in revoked_serials(alice)
    assert (alice / "crl.pem").read_bytes() == (bob / "crl.pem").read_bytes()


def test_the_newest_crl_is_kept_in_the_inventory(tmp_path: Path, backend: str | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """write_crl stores the CRL with its number in its own transaction; readers take the newest."""
    from grpcpki.engine.pki import Pki
    from grpcpki.engine.profiles import Role
    from grpcpki.engine.revocation import CrlCache, crl_file_number, revoke, stored_crl, sync_crl_file
    from grpcpki.engine.schema import crls

    if backend:
        monkeypatch.setenv("GRPCPKI_DB", backend)
    pki = Pki.init(tmp_path / "pki")
    for name in ("web", "api"):
        pki.issue(Role.SERVER, name)
    assert stored_crl(pki.inventory) is None and CrlCache().current(pki) == b""  # nothing signed yet
    first = revoke(pki, "web").crl
    older = (tmp_path / "pki" / "crl.pem").read_bytes()
    second = revoke(pki, "api").crl
    stored = stored_crl(pki.inventory)
    assert stored is not None and stored.number == second.number == first.number + 1
    assert stored.pem == (tmp_path / "pki" / "crl.pem").read_bytes()
    assert crl_file_number(tmp_path / "pki" / "crl.pem") == stored.number
    assert stored.next_update == second.next_update.replace(microsecond=0)  # stored to the second, as the CRL has it
    assert pki.inventory.run(sa.select(sa.func.count()).select_from(crls)).scalar() == 1  # only the newest
    cache = CrlCache()
    assert cache.current(pki) == stored.pem
    # A crl.pem older than the database's is rewritten from it; a current one is left alone.
    (tmp_path / "pki" / "crl.pem").write_bytes(older)
    assert sync_crl_file(pki) == stored.number
    assert (tmp_path / "pki" / "crl.pem").read_bytes() == stored.pem
    assert sync_crl_file(pki) is None


def test_the_commit_point_on_postgresql_survives_another_directory_committing(
    tmp_path: Path, postgres: PostgresServer, postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's issue is SIGKILLed at each step of the store protocol; Bob (another PKI directory
    on the same database) then commits a change of his own, and Alice's next opening of her
    directory applies the recovery rule: her certificate is there with its files (killed after
    the commit point) or not at all (before it). Bob's commit must not have removed Alice's
    pending marker. Only the killed command is a subprocess; Bob and the reopening run in-process
    (the same engine the CLI calls), which keeps this loop of ~40 crash points affordable."""
    from grpcpki.engine.pki import Pki
    from grpcpki.engine.profiles import Role

    require_psycopg()
    url = postgres.url(postgres_db)
    monkeypatch.setenv("GRPCPKI_DB", url)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert run_grpcpki("--db", url, "--pki", str(alice), "init-ca").code == 0
    shutil.copytree(alice, bob)
    seen: list[str] = []
    for point in range(1, 40):
        name = f"svc-{point}"
        killed = run_grpcpki("--db", url, "--pki", str(alice), "issue", "server", name,
                             env={"GRPCPKI_TEST_CRASH_AT": str(point)})
        if killed.code == 0:
            break
        assert killed.code == -9, killed.output
        seen.append(killed.stderr.strip().splitlines()[-1].split(": ", 1)[-1])
        bobs = Pki.open(bob)
        try:
            bobs.issue(Role.CLIENT, f"bob-{point}")
        finally:
            bobs.inventory.close()
        alices = Pki.open(alice)  # the recovery rule runs here, as in any command
        try:
            rows = {r.name: r for r in alices.records()}
        finally:
            alices.inventory.close()
        cert = alice / "certs" / name / "cert.pem"
        if name in rows:
            assert cert.is_file(), (seen[-1], "committed but its files were rolled back")
            assert x509.load_pem_x509_certificate(cert.read_bytes()).serial_number == int(rows[name].serial, 16)
        else:
            assert not cert.exists(), (seen[-1], "files of a change that never committed")
        assert not list((alice / ".journal").glob("*.json")), seen[-1]
        assert not [p for p in alice.rglob(".*.tmp")], seen[-1]
    assert "after commit" in seen and "before commit" in seen, seen


def test_a_pki_with_its_own_inventory_refuses_a_database_url(tmp_path: Path, postgres: PostgresServer,
                                                            postgres_db: str) -> None:
    require_psycopg()
    pki = str(tmp_path / "pki")
    assert run_grpcpki("--pki", pki, "init-ca").code == 0
    for args in (["list"], ["issue", "server", "web"]):
        result = run_grpcpki("--db", postgres.url(postgres_db), "--pki", pki, *args)
        assert result.code == 1 and "keeps its own inventory (inventory.db)" in result.stderr, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "pki" / "certs" / "web").exists()


def test_the_ca_service_rows_on_both_backends(tmp_path: Path, backend: str | None) -> None:
    """engine/enroll_store.py (SQLAlchemy Core): a token is spent once or revoked, audit rows count."""
    from grpcpki.engine.enroll_store import AuditRow, SqlEnrollmentStore, TokenRow

    inventory = _inventory(tmp_path, backend)
    try:
        now = datetime.now(UTC)
        token = TokenRow("ab" * 32, "abababababab", "web", "client", ("DNS:web",), 30, False, now, "alice",
                         now + timedelta(hours=1))
        with inventory.transaction():
            store = SqlEnrollmentStore(inventory)
            store.add_token(token)
        assert store.get_token(token.token_hash) == token
        with inventory.transaction():
            assert store.spend_token(token.token_hash, now=now, serial="01", via="replica-a") is True
            assert store.spend_token(token.token_hash, now=now, serial="02", via="replica-b") is False
            store.add_audit(AuditRow(now, "enroll", "web", "client", "01", ("DNS:web",), "token:abab", "a"))
            store.add_audit(AuditRow(now, "renew", "web", "client", "02", ("DNS:web",), "certificate:01", "b"))
        assert store.issued_since("web", now - timedelta(minutes=1)) == 2
        assert [row.serial for row in store.audit("web")] == ["01", "02"]
        spent = store.get_token(token.token_hash)
        assert spent is not None and spent.used_serial == "01" and [t.token_id for t in store.tokens()] == ["abababababab"]
        assert spent.state(now) == "used" and store.find_token("abababababab") == spent
        # A token is spent or revoked, never both: each conditional UPDATE's row count decides.
        other = TokenRow("cd" * 32, "cdcdcdcdcdcd", "api", "server", (), None, True, now, "alice",
                         now + timedelta(hours=1))
        with inventory.transaction():
            store.add_token(other)
            assert store.revoke_token(token.token_hash, now=now, by="bob") is False  # used already
            assert store.revoke_token(other.token_hash, now=now, by="bob") is True
            assert store.revoke_token(other.token_hash, now=now, by="bob") is False
            assert store.spend_token(other.token_hash, now=now, serial="03", via="a") is False
        withdrawn = store.get_token(other.token_hash)
        assert withdrawn is not None and withdrawn.state(now) == "revoked" and withdrawn.revoked_by == "bob"
        assert withdrawn.used_at is None and withdrawn.revoked_at is not None
    finally:
        inventory.close()
