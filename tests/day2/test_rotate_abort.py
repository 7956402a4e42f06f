"""ca rotate abort: back to the previous CA alone; leaves of the new CA are never stranded silently.
A begin that fails records nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from support import OPENSSL, Result, assert_clean_error, requires_openssl, tree

ENV = {"GRPCPKI_PASSPHRASE": "ca secret"}


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under root (lock file aside) with a digest of its content."""
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in tree(root) if "lock" not in name}


def _verifies(pki: Path, name: str) -> bool:
    chain = pki / "certs" / name / "chain.pem"
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(pki / "ca.crt"), "-untrusted", str(chain), str(pki / "certs" / name / "cert.pem")],
        capture_output=True, text=True,
    )
    return result.returncode == 0


@pytest.fixture
def pki(cli: Callable[..., Result], tmp_path: Path) -> Path:
    assert cli("init-ca", "--intermediate", "--encrypt", env=ENV).code == 0
    assert cli("issue", "server", "localhost", env=ENV).code == 0
    assert cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/web", env=ENV).code == 0
    return tmp_path / "pki"


@requires_openssl
def test_abort_restores_the_bundle_and_the_previous_issuer(cli: Callable[..., Result], pki: Path) -> None:
    bundle = (pki / "ca.crt").read_bytes()
    assert "nothing to abort" in cli("ca", "rotate", "abort").stderr
    assert cli("ca", "rotate", "begin", env=ENV).code == 0
    assert (pki / "ca.crt").read_bytes() != bundle
    result = cli("ca", "rotate", "abort", "--json")
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["action"] == "aborted" and document["restored_generation"] == 1
    assert [r["subject"] for r in document["dropped_roots"]] == ["CN=grpcpki CA G2"]
    assert (pki / "ca.crt").read_bytes() == bundle
    status = json.loads(cli("ca", "rotate", "status", "--json").stdout)
    assert status["phase"] == "idle" and status["generation"] == 1
    # The previous CA issues again, and the abandoned CA's keys are kept, not deleted.
    assert cli("issue", "server", "api.internal", env=ENV).code == 0
    assert _verifies(pki, "api.internal")
    issuer = x509.load_pem_x509_certificate((pki / "certs/api.internal/cert.pem").read_bytes()).issuer.rfc4514_string()
    assert issuer == "CN=grpcpki CA Issuing CA"
    archive = Path(document["archive"])
    assert {p.name for p in archive.iterdir()} == {"root.crt", "root.key", "intermediate.crt", "intermediate.key"}
    assert (archive / "root.key").stat().st_mode & 0o077 == 0
    assert not (pki / "ca/g2/root.crt").exists()
    # A new rotation makes a fresh generation 2, not the aborted one again.
    assert cli("ca", "rotate", "begin", env=ENV).code == 0
    assert (pki / "ca/g2/root.crt").read_bytes() != (archive / "root.crt").read_bytes()
    cas = json.loads(cli("list", "--all", "--json").stdout)
    aborted_roots = [r for r in cas if r.get("kind") == "root" and r["status"] == "archived"]
    assert len(aborted_roots) == 1


@requires_openssl
def test_leaves_of_the_new_ca_block_abort_unless_reissued(cli: Callable[..., Result], pki: Path) -> None:
    assert cli("ca", "rotate", "begin", env=ENV).code == 0
    assert cli("renew", "localhost", env=ENV).code == 0  # now issued by generation 2
    key = (pki / "certs/localhost/key.pem").read_bytes()
    before = _snapshot(pki)
    assert_clean_error(cli("ca", "rotate", "abort", env=ENV), "would stop being trusted: server localhost", "--reissue")
    assert _snapshot(pki) == before
    result = cli("ca", "rotate", "abort", "--reissue", env=ENV)
    assert result.code == 0, result.output
    assert "reissued by the previous CA: server localhost" in result.stderr
    # Reissued by generation 1, for the same key, and trusted by the restored bundle.
    assert (pki / "certs/localhost/key.pem").read_bytes() == key
    assert _verifies(pki, "localhost") and _verifies(pki, "web")
    assert cli("doctor", "localhost").code == 0


def test_a_failed_begin_records_nothing(cli: Callable[..., Result], pki: Path) -> None:
    before = _snapshot(pki)
    assert_clean_error(cli("ca", "rotate", "begin"), "no passphrase was given")
    assert_clean_error(cli("ca", "rotate", "begin", env={"GRPCPKI_PASSPHRASE": "wrong"}), "passphrase")
    assert _snapshot(pki) == before
    status = json.loads(cli("ca", "rotate", "status", "--json").stdout)
    assert status["phase"] == "idle" and status["generation"] == 1
    assert "nothing to abort" in cli("ca", "rotate", "abort").stderr
