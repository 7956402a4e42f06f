"""`grpcpki doctor --store`: each broken invariant reported with its fix; `--repair` fixes what is safe."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from store_support import assert_store_consistent

from grpcpki.engine import Pki, Role
from support import Result, assert_clean_error

Cli = Callable[..., Result]


@pytest.fixture
def pki_dir(cli: Cli, tmp_path: Path) -> Path:
    for args in (
        ("init-ca",),
        ("issue", "server", "a"),
        ("issue", "server", "b"),
        ("issue", "client", "r"),
        ("renew", "a", "--force"),
    ):
        assert cli(*args).code == 0, args
    return tmp_path / "pki"


def _ids(result: Result) -> list[str]:
    return sorted(p["id"] for p in json.loads(result.stdout)["problems"])


def test_a_consistent_store_passes(cli: Cli, pki_dir: Path) -> None:
    result = cli("doctor", "--store")
    assert result.code == 0, result.output
    assert "is consistent" in result.stderr


def test_damage_is_reported_with_fixes_and_repaired(cli: Cli, pki_dir: Path) -> None:
    # An old crl.pem (before r was revoked) put back, as a partial restore would.
    assert cli("revoke", "b").code == 0
    old_crl = (pki_dir / "crl.pem").read_bytes()
    assert cli("revoke", "r").code == 0
    (pki_dir / "crl.pem").write_bytes(old_crl)
    # A temp file from a grpcpki before the journal, and a certificate signed but never recorded.
    (pki_dir / "certs" / "a" / ".key.pem.x1y2z3.tmp").write_bytes(b"partial")
    pki = Pki.open(pki_dir)
    leaf = pki.signing_ca().issue(Role.SERVER, "orphan")
    pki.inventory.close()
    (pki_dir / "certs" / "orphan").mkdir()
    for name, data in (("cert.pem", leaf.cert_pem), ("chain.pem", leaf.chain_pem), ("key.pem", leaf.key_pem)):
        (pki_dir / "certs" / "orphan" / name).write_bytes(data)
    # The archive of a's first serial holding b's certificate (issue 9 saw this after races).
    archived = next((pki_dir / "archive" / "a").iterdir())
    shutil.copy(pki_dir / "archive" / "b" / next((pki_dir / "archive" / "b").iterdir()).name / "cert.pem", archived / "cert.pem")
    # An archive folder built under its temp name whose journal is gone (deleted by hand).
    orphan_archive = pki_dir / "archive" / "a" / ".0abc.x1y2z3.tmp"
    orphan_archive.mkdir(parents=True)
    os.link(pki_dir / "certs" / "a" / "cert.pem", orphan_archive / "cert.pem")

    report = cli("doctor", "--store", "--json")
    assert report.code == 1
    assert _ids(report) == ["store-archive-mismatch", "store-crl-missing", "store-temp-file", "store-temp-file",
                            "store-untracked-certificate"]
    text = cli("doctor", "--store")
    assert "fix: `grpcpki doctor --store --repair`" in text.stdout
    # The default doctor run includes the cheap part (not the archive, which needs reading every file).
    default = json.loads(cli("doctor", "--json").stdout)
    assert sorted(p["id"] for p in default["store"]) == ["store-crl-missing", "store-temp-file", "store-temp-file",
                                                         "store-untracked-certificate"]

    repaired = cli("doctor", "--store", "--repair", "--json")
    assert repaired.code == 0, repaired.output
    document = json.loads(repaired.stdout)
    assert document["problems"] == [] and len(document["repaired"]) == 5
    # The folder's links went; the certificate they pointed at is still in place.
    assert not orphan_archive.exists() and (pki_dir / "certs" / "a" / "cert.pem").is_file()
    assert_store_consistent(pki_dir)
    # The recorded certificate is now in reach of revoke.
    assert cli("revoke", "orphan").code == 0
    assert_store_consistent(pki_dir)


def test_a_pending_journal_is_finished_by_repair(cli: Cli, pki_dir: Path) -> None:
    crashed = cli("issue", "server", "late", env={"GRPCPKI_TEST_CRASH_AT": "7"})  # just after the commit point
    assert crashed.code == -9 and "after commit" in crashed.stderr
    pending = cli("doctor", "--store", "--json", "--lock-timeout", "0s")
    # doctor opens the PKI as a reader: it may already have finished the change itself.
    assert set(_ids(pending)) <= {"store-journal-pending"}
    assert cli("doctor", "--store", "--repair").code == 0
    assert_store_consistent(pki_dir)
    assert (pki_dir / "certs" / "late" / "cert.pem").is_file()


def test_what_cannot_be_repaired_is_left_alone_with_a_safe_fix(cli: Cli, pki_dir: Path) -> None:
    (pki_dir / "certs" / "b" / "key.pem").unlink()
    result = cli("doctor", "--store", "--repair")
    assert result.code == 1
    assert "store-file-missing" in result.stdout and "grpcpki renew b --force" in result.stdout
    assert cli("renew", "b", "--force").code == 0
    assert_store_consistent(pki_dir)


def test_repair_needs_store(cli: Cli, pki_dir: Path) -> None:
    assert_clean_error(cli("doctor", "--repair"), "--repair", code=2)
    assert_clean_error(cli("doctor", "a", "--store"), "--store", code=2)


def test_a_temp_archive_folder_holding_the_only_copy_of_a_file_is_left_for_a_person(
    cli: Cli, pki_dir: Path
) -> None:
    """An archive folder under its temp name whose journal is gone: --repair deletes it only when
    every file in it has another name; one holding the only copy of a file is reported, kept."""
    orphan = pki_dir / "archive" / "b" / ".0def.x1y2z3.tmp"
    orphan.mkdir(parents=True)
    (orphan / "cert.pem").write_bytes((pki_dir / "certs" / "b" / "cert.pem").read_bytes())  # a copy: one name
    report = json.loads(cli("doctor", "--store", "--json").stdout)
    [problem] = [p for p in report["problems"] if p["id"] == "store-temp-file"]
    assert "exists nowhere else" in json.dumps(problem)
    repaired = cli("doctor", "--store", "--repair")
    assert repaired.code == 0 and "exists nowhere else" in repaired.stdout  # a warning, left as it was
    assert (orphan / "cert.pem").is_file()
