"""Secrets at rest (issue 9): the CA key's KDF, file and folder modes whatever the umask, and the
warning (with its fix) when the CA key is exposed. OpenSSL is the independent reader."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from grpcpki.engine.keys import KDF_ITERATIONS, key_protection, load_private_key
from support import OPENSSL, Result, cli_env, requires_openssl

PASSPHRASE = "correct horse battery staple"
ENV = {"GRPCPKI_PASSPHRASE": PASSPHRASE}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def encrypted_pki(cli: Callable[..., Result], tmp_path: Path) -> Path:
    result = cli("init-ca", "--encrypt", "--intermediate", env=ENV)
    assert result.code == 0, result.output
    return tmp_path / "pki"


def test_ca_keys_use_pbkdf2_sha256_at_600000_iterations(encrypted_pki: Path) -> None:
    for name in ("root.key", "intermediate.key"):
        protection = key_protection((encrypted_pki / "ca" / "g1" / name).read_bytes())
        assert protection.scheme == "PBKDF2-HMAC-SHA256" and protection.cost == KDF_ITERATIONS == 600_000
        assert protection.strong


@requires_openssl
def test_openssl_reads_the_encrypted_ca_key(encrypted_pki: Path) -> None:
    key = encrypted_pki / "ca" / "g1" / "root.key"
    env = {**os.environ, "PW": PASSPHRASE}
    parsed = subprocess.run([OPENSSL, "asn1parse", "-in", str(key)], capture_output=True, text=True, check=True)
    assert "PBES2" in parsed.stdout and "PBKDF2" in parsed.stdout and "hmacWithSHA256" in parsed.stdout
    assert "aes-256-cbc" in parsed.stdout and ":0927C0" in parsed.stdout  # 600,000 iterations
    public = subprocess.run([OPENSSL, "pkey", "-in", str(key), "-passin", "env:PW", "-pubout"],
                            capture_output=True, text=True, env=env, check=True).stdout
    from_cert = subprocess.run([OPENSSL, "x509", "-in", str(encrypted_pki / "ca" / "g1" / "root.crt"), "-pubkey",
                                "-noout"], capture_output=True, text=True, check=True).stdout
    assert public == from_cert
    wrong = subprocess.run([OPENSSL, "pkey", "-in", str(key), "-passin", "pass:wrong", "-noout"],
                           capture_output=True, text=True)
    assert wrong.returncode != 0


def test_rotation_writes_strong_keys_too(cli: Callable[..., Result], encrypted_pki: Path) -> None:
    assert cli("ca", "rotate", "begin", env=ENV).code == 0
    for key in (encrypted_pki / "ca" / "g2").glob("*.key"):
        assert key_protection(key.read_bytes()).strong, key


def test_a_weak_key_still_loads_warns_and_is_reencrypted(cli: Callable[..., Result], encrypted_pki: Path) -> None:
    key_path = encrypted_pki / "ca" / "g1" / "intermediate.key"
    key = load_private_key(key_path.read_bytes(), PASSPHRASE.encode())
    # What grpcpki wrote before (cryptography's BestAvailableEncryption: 2,048 PBKDF2 iterations).
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    assert key_protection(key_path.read_bytes()).cost == 2048
    issued = cli("issue", "server", "localhost", env=ENV)
    assert issued.code == 0, issued.output
    assert "2,048 iterations, cheap to guess offline" in issued.stderr
    fix = f"grpcpki --pki {encrypted_pki} ca reencrypt"
    assert fix in issued.stderr
    fixed = cli(*fix.split()[3:], env=ENV)  # the printed command, run as printed (--pki is ours)
    assert fixed.code == 0, fixed.output
    assert "re-encrypted" in fixed.stderr and "warning" not in fixed.stderr
    assert key_protection(key_path.read_bytes()).strong and _mode(key_path) == 0o600
    assert load_private_key(key_path.read_bytes(), PASSPHRASE.encode()).public_key() == key.public_key()
    again = cli("issue", "server", "api.example.com", env=ENV)
    assert again.code == 0 and "warning" not in again.stderr, again.output
    assert cli("ca", "reencrypt", "--json", env={}).code == 0  # nothing weak left: needs no passphrase


def test_exposed_ca_keys_and_folders_are_reported_with_a_chmod(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("init-ca").code == 0
    pki = tmp_path / "pki"
    key, folder = pki / "ca" / "g1" / "root.key", pki / "ca" / "g1"
    key.chmod(0o644)
    folder.chmod(0o755)
    # Every command that opens the PKI through the engine warns (`list` stays a fast reader).
    listed = cli("renew", "--all", "--dry-run")
    assert listed.code == 0, listed.output
    assert f"the CA key {key} is readable by group or others (0644); fix: chmod 600 {key}" in listed.stderr
    assert f"fix: chmod 700 {folder}" in listed.stderr
    for line in listed.stderr.splitlines():
        if "fix: chmod" in line:
            subprocess.run(line.split("fix: ", 1)[1], shell=True, check=True)
    assert "warning" not in cli("renew", "--all", "--dry-run").stderr


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    pki = tmp_path / "deep" / "er" / "pki"

    def run(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "grpcpki", "--pki", str(pki), *args], capture_output=True, text=True,
            env=cli_env(ENV), timeout=60, preexec_fn=lambda: os.umask(0),  # noqa: PLW1509 - the point of the test
        )
        assert result.returncode == 0, result.stdout + result.stderr

    run("init-ca", "--intermediate", "--encrypt")
    run("issue", "server", "localhost")
    run("renew", "localhost", "--force")  # archives the first certificate and its key
    assert _mode(tmp_path / "deep") == 0o700 and _mode(tmp_path / "deep" / "er") == 0o700
    folders = [pki, *(p for p in pki.rglob("*") if p.is_dir())]
    assert {_mode(p) for p in folders} == {0o700}, {str(p): oct(_mode(p)) for p in folders}
    keys = [p for p in pki.rglob("*") if p.is_file() and p.suffix == ".key" or p.name == "key.pem"]
    assert len(keys) >= 4 and {_mode(p) for p in keys} == {0o600}, {str(p): oct(_mode(p)) for p in keys}
    archived = list((pki / "archive").rglob("key.pem"))
    assert archived and {_mode(p) for p in archived} == {0o600}
    public = [p for p in pki.rglob("*.crt")] + [p for p in pki.rglob("*.pem") if p.name != "key.pem"]
    assert public and all(not _mode(p) & 0o022 for p in public), {str(p): oct(_mode(p)) for p in public}


def test_init_ca_sets_the_mode_of_an_existing_pki_folder(cli: Callable[..., Result], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    pki.chmod(0o777)
    assert cli("init-ca").code == 0
    assert _mode(pki) == 0o700


def test_a_passphrase_file_is_read_with_a_cap(cli: Callable[..., Result], tmp_path: Path) -> None:
    from support import assert_clean_error

    assert_clean_error(cli("init-ca", "--encrypt", "--passphrase-file", "/dev/zero"), "more than 4096 bytes")
    assert not (tmp_path / "pki").exists()
