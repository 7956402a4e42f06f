"""The PKI directory on disk: layout, modes, inventory, and all-or-nothing writes."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import tree
from grpcpki.engine import (
    AlreadyExistsError,
    CAExistsError,
    InventoryError,
    NoCAError,
    NotFoundError,
    PassphraseError,
    Pki,
    Role,
    verify_chain,
)
from grpcpki.engine.inventory import SCHEMA_VERSION


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_documented_layout_with_private_modes(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki", name="Example CA", intermediate=True)
    pki.issue(Role.SERVER, "localhost")
    # inventory.db-wal/-shm exist only while the inventory is open (SQLite WAL mode).
    assert [f for f in tree(tmp_path / "pki") if not f.startswith("inventory.db-")] == [
        ".lock",
        "ca.crt",
        "ca/g1/intermediate.crt",
        "ca/g1/intermediate.key",
        "ca/g1/root.crt",
        "ca/g1/root.key",
        "certs/localhost/cert.pem",
        "certs/localhost/chain.pem",
        "certs/localhost/key.pem",
        "inventory.db",
    ]
    root = tmp_path / "pki"
    for key in ("ca/g1/root.key", "ca/g1/intermediate.key", "certs/localhost/key.pem"):
        assert _mode(root / key) == 0o600, key
    for directory in ("", "ca/g1", "certs/localhost"):
        assert _mode(root / directory) == 0o700, directory
    assert _mode(root / "certs/localhost/cert.pem") == 0o644
    material = pki.material("localhost")
    check = verify_chain(material.chain_path.read_bytes(), material.trust_path.read_bytes(), Role.SERVER, host="localhost")
    assert check.ok and len(check.chain_subjects) == 3


def test_refuses_to_overwrite_a_ca_and_force_moves_the_old_one_aside(tmp_path: Path) -> None:
    Pki.init(tmp_path / "pki")
    with pytest.raises(CAExistsError) as info:
        Pki.init(tmp_path / "pki")
    assert "--force" in (info.value.hint or "")
    old_bundle = (tmp_path / "pki" / "ca.crt").read_bytes()
    Pki.init(tmp_path / "pki", force=True)
    assert (tmp_path / "pki" / "ca.crt").read_bytes() != old_bundle
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("pki.replaced-")]
    assert len(backups) == 1 and (backups[0] / "ca.crt").read_bytes() == old_bundle


def test_encrypted_ca_asks_for_the_passphrase_only_when_signing(tmp_path: Path) -> None:
    Pki.init(tmp_path / "pki", passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "pki/ca/g1/root.key").read_bytes()
    asked: list[int] = []

    def ask() -> bytes:
        asked.append(1)
        return b"correct horse"

    pki = Pki.open(tmp_path / "pki", passphrase=ask)
    assert pki.records() == [] and asked == []  # listing needs no key
    pki.issue(Role.SERVER, "localhost")
    assert asked == [1]
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        Pki.open(tmp_path / "pki", passphrase=b"wrong").issue(Role.SERVER, "other.example")
    with pytest.raises(PassphraseError, match="no passphrase"):
        Pki.open(tmp_path / "pki").issue(Role.SERVER, "other.example")
    assert [r.name for r in Pki.open(tmp_path / "pki").records()] == ["localhost"]


def test_inventory_records_everything_issued(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    server = pki.issue(Role.SERVER, "localhost")
    client = pki.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"], name_as_san=False)
    assert server.sans == ("DNS:localhost", "IP:127.0.0.1", "IP:::1")
    assert client.sans == ("URI:spiffe://example.org/web",)
    # The client carries a SPIFFE ID, so it is an X509-SVID: both EKUs (X509-SVID section 4.4).
    assert client.eku == ("serverAuth", "clientAuth") and server.eku == ("serverAuth",)
    assert {r.name for r in pki.records()} == {"localhost", "web"}
    assert [r.name for r in pki.records(kind="client")] == ["web"]
    assert pki.inventory.by_serial(server.serial) == server
    row = sqlite3.connect(tmp_path / "pki/inventory.db").execute(
        "SELECT kind, name, status, fingerprint, key_type, cert_path FROM certificates WHERE name='web'"
    ).fetchone()
    assert row == ("client", "web", "active", client.fingerprint, "ecdsa-p256", "certs/web/cert.pem")
    assert sqlite3.connect(tmp_path / "pki/inventory.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_expiring_filter(tmp_path: Path) -> None:
    from datetime import timedelta

    pki = Pki.init(tmp_path / "pki")
    pki.issue(Role.SERVER, "short.example", days=10)
    pki.issue(Role.SERVER, "long.example", days=200)
    assert [r.name for r in pki.records(expiring_within=timedelta(days=30))] == ["short.example"]


def test_duplicate_names_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    pki.issue(Role.SERVER, "localhost")
    before = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*.pem")}
    with pytest.raises(AlreadyExistsError, match="renew localhost"):
        pki.issue(Role.SERVER, "localhost")
    assert {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*.pem")} == before
    # Names are unique per kind: a client may share the server's name (issue 11, item 9).
    assert pki.issue(Role.CLIENT, "localhost").chain_path == tmp_path / "pki/certs/localhost+client/chain.pem"


def test_failed_store_leaves_files_and_rows_unchanged(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    first = pki.issue(Role.SERVER, "localhost")
    files_before = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file() and p.suffix == ".pem"}
    # A second active leaf for the same name is refused in plain words, not as a UNIQUE constraint.
    leaf = pki.signing_ca().issue(Role.SERVER, "localhost")
    with pytest.raises(AlreadyExistsError):
        pki.store_leaf(leaf)
    assert {p: p.read_bytes() for p in files_before} == files_before
    assert not [p for p in (tmp_path / "pki").rglob(".*.tmp")]
    assert [r.serial for r in pki.records()] == [first.serial]


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(NoCAError) as info:
        Pki.open(tmp_path / "missing")
    assert "grpcpki init-ca" in (info.value.hint or "")
    pki = Pki.init(tmp_path / "pki")
    with pytest.raises(NotFoundError, match="no active certificate named 'ghost'"):
        pki.material("ghost")


def test_inventory_from_a_newer_grpcpki_is_refused(tmp_path: Path) -> None:
    Pki.init(tmp_path / "pki")
    db = sqlite3.connect(tmp_path / "pki/inventory.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(InventoryError, match="newer grpcpki"):
        Pki.open(tmp_path / "pki")


def test_not_an_inventory_is_refused(tmp_path: Path) -> None:
    Pki.init(tmp_path / "pki")
    (tmp_path / "pki/inventory.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InventoryError, match="not a grpcpki inventory"):
        Pki.open(tmp_path / "pki")


def test_engine_and_diagnosis_import_no_cli_or_grpc() -> None:
    # Every module of the engine and of the diagnosis package, found on disk, so a new one is
    # covered without editing this test. (No diagnosis module needs grpc: the probe is stdlib ssl.)
    code = (
        "import importlib, pkgutil, sys, grpcpki.engine as engine, grpcpki.diagnosis as diagnosis\n"
        "names = [m.name for m in pkgutil.iter_modules(engine.__path__, 'grpcpki.engine.')]\n"
        "names += [m.name for m in pkgutil.iter_modules(diagnosis.__path__, 'grpcpki.diagnosis.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert len(names) >= 25, names\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich', 'grpc'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"
