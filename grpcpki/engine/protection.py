"""How well the CA's secrets are protected at rest: file modes of the CA keys and their folders,
and the key-derivation function of encrypted CA keys. Read-only and key-free: it stats files and
reads PEM headers, so every command can run it before doing anything else.

Each problem comes with a fix that is safe to run as printed (a ``chmod`` that only removes
access, or ``grpcpki ca reencrypt``, which rewrites a key atomically with the same passphrase).
"""

from __future__ import annotations

import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from grpcpki.engine.errors import GrpcpkiError, PassphraseError

if TYPE_CHECKING:
    from grpcpki.engine.pki import Pki

_KEY_NAMES = ("root.key", "intermediate.key")


@dataclass(frozen=True)
class Exposure:
    """One way the CA's secrets are less protected than docs/security.md says, and its fix."""

    path: Path
    problem: str
    fix: str


def ca_key_paths(pki_path: Path) -> list[Path]:
    """Every CA key file of every generation (ca/gN/root.key, ca/gN/intermediate.key)."""
    ca_dir = Path(pki_path) / "ca"
    if not ca_dir.is_dir():
        return []
    return sorted(p for p in ca_dir.glob("g*/*.key") if p.name in _KEY_NAMES and p.is_file())


def check_ca_protection(pki_path: Path | str) -> list[Exposure]:
    """Modes and KDF of the CA keys (docs/security.md, "Secrets at rest"), as fixable findings."""
    # storage (tempfile, shutil) only once there is a key to read: every command runs this check.
    from grpcpki.engine.storage import read_file

    root = Path(pki_path)
    found: list[Exposure] = []
    mode = _mode(root)
    if mode is not None and mode & 0o022:
        # Whoever can write here can rename ca/ away and put their own CA in its place.
        found.append(Exposure(root, f"the PKI folder {root} is writable by group or others ({mode:04o})",
                              f"chmod go-w {shlex.quote(str(root))}"))
    folders = [root / "ca", *sorted(p for p in (root / "ca").glob("g*") if p.is_dir())] if (root / "ca").is_dir() else []
    for folder in folders:
        mode = _mode(folder)
        if mode is not None and mode & 0o077:
            found.append(Exposure(folder, f"the CA key folder {folder} is open to group or others ({mode:04o})",
                                  f"chmod 700 {shlex.quote(str(folder))}"))
    weak: list[Path] = []
    for key in ca_key_paths(root):
        mode = _mode(key)
        if mode is not None and mode & 0o077:
            found.append(Exposure(key, f"the CA key {key} is readable by group or others ({mode:04o})",
                                  f"chmod 600 {shlex.quote(str(key))}"))
        try:
            pem = read_file(key, "CA key", limit=1 << 20)
        except GrpcpkiError:
            continue
        if b"ENCRYPTED" not in pem:
            # Both encrypted forms say so in their PEM (the "ENCRYPTED PRIVATE KEY" label, the legacy
            # "Proc-Type: 4,ENCRYPTED" header): a plain key has no KDF to judge, and skipping the
            # parse keeps cryptography out of commands that only read (apply's no-op path, issue 10).
            continue
        from grpcpki.engine.keys import KDF_ITERATIONS, key_protection

        protection = key_protection(pem)
        if protection.encrypted and not protection.strong:
            weak.append(key)
            found.append(Exposure(
                key,
                f"the CA key {key} is encrypted with {protection.describe()}, cheap to guess offline "
                f"(grpcpki writes PBKDF2-HMAC-SHA256 with {KDF_ITERATIONS:,} iterations)",
                f"grpcpki --pki {shlex.quote(str(root))} ca reencrypt",
            ))
    return found


@dataclass(frozen=True)
class Reencrypted:
    """One CA key ``reencrypt_ca_keys`` looked at: rewritten, or why not."""

    path: Path
    before: str
    rewritten: bool


def reencrypt_ca_keys(pki: Pki, *, force: bool = False) -> list[Reencrypted]:
    """Rewrite every encrypted CA key whose KDF is weak (every encrypted one with ``force``) with
    the current KDF and the same passphrase, in one store transaction (all keys or none).

    Keys without encryption are left alone: encrypting them is `init-ca --encrypt`'s decision,
    and an unencrypted key may be read by automation that has no passphrase.
    """
    from grpcpki.engine.keys import is_encrypted_pem, key_protection, load_private_key, private_key_pem
    from grpcpki.engine.storage import PRIVATE_FILE_MODE, read_file

    results: list[Reencrypted] = []
    with pki.transaction() as tx:
        for path in ca_key_paths(pki.path):
            pem = read_file(path, "CA key", limit=1 << 20)
            protection = key_protection(pem)
            if not is_encrypted_pem(pem) or (protection.strong and not force):
                results.append(Reencrypted(path, protection.describe(), False))
                continue
            passphrase = pki.passphrase_value()
            if not passphrase:
                raise PassphraseError(f"{path} is encrypted and no passphrase was given",
                                      "set GRPCPKI_PASSPHRASE or pass --passphrase-file")
            key = load_private_key(pem, passphrase, source=str(path))
            tx.write(path, private_key_pem(key, passphrase), PRIVATE_FILE_MODE)
            results.append(Reencrypted(path, protection.describe(), True))
    return results


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.lstat().st_mode)
    except OSError:
        return None


__all__ = ["Exposure", "Reencrypted", "ca_key_paths", "check_ca_protection", "reencrypt_ca_keys"]
