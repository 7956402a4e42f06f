"""A real SoftHSM2 token per test, and helpers to drive `grpcpki` against it.

SoftHSM2 (Debian's ``softhsm2``; `.ci/run` installs it) keeps its tokens in the directory its
config file names, and reads the config from ``SOFTHSM2_CONF``: each test gets a config and a
token directory of its own under tmp_path, so tests never see each other's keys or the
machine's. Outside CI a missing SoftHSM2 or python-pkcs11 skips the tests and says why; in CI
(CI=true) it fails them, because a skipped HSM test there would hide a broken install step.

A uniquely named module (not a second ``conftest``) so ``from hsm_support import ...`` is unambiguous.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import Result, cli_env, run_grpcpki

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "grpcpki-test"
# Unusual enough that finding it in any output means the PIN leaked.
PIN = "7391-pin-never-printed"
SO_PIN = "5555-so-pin"


def require(what: str, present: bool) -> None:
    """Skip (outside CI) or fail (in CI) when a real component is missing."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI (CI=true): .ci/run and the test extra must install it")
    pytest.skip(f"{what}; install Debian's softhsm2 and `pip install 'grpcpki[hsm]'` to run the PKCS#11 tests")


@dataclass(frozen=True)
class SoftHsm:
    """One SoftHSM2 installation with a fresh, initialised token."""

    root: Path
    conf: Path
    pin_file: Path

    def env(self, *, pin: bool = True, module: bool = True, **extra: str) -> dict[str, str]:
        """Environment for grpcpki: the token's config, the module, and the PIN (from a file)."""
        env = {"SOFTHSM2_CONF": str(self.conf)}
        if module:
            env["GRPCPKI_PKCS11_MODULE"] = str(MODULE)
        if pin:
            env["GRPCPKI_PKCS11_PIN_FILE"] = str(self.pin_file)
        env.update(extra)
        return env

    def init_token(self, label: str) -> None:
        proc = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)}, capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def objects(self, label: str = TOKEN) -> list[dict[str, object]]:
        """Every object on the token, with the attributes that say whether a key can leave it.

        Read in a subprocess: a PKCS#11 library reads SOFTHSM2_CONF once per process.
        """
        script = f"""
import json, pkcs11
from pkcs11 import Attribute, ObjectClass
session = pkcs11.lib({str(MODULE)!r}).get_token(token_label={label!r}).open(user_pin={PIN!r})
out = []
for obj in session.get_objects():
    entry = {{"label": obj[Attribute.LABEL], "class": obj[Attribute.CLASS].name}}
    if obj[Attribute.CLASS] == ObjectClass.PRIVATE_KEY:
        for name in ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE"):
            entry[name] = bool(obj[getattr(Attribute, name)])
    out.append(entry)
print(json.dumps(out))
"""
        proc = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
            capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        result: list[dict[str, object]] = json.loads(proc.stdout)
        return result


@pytest.fixture
def softhsm(tmp_path: Path) -> SoftHsm:
    """A SoftHSM2 with one token labelled TOKEN (user PIN in a 0600 file), private to this test."""
    require("SoftHSM2 is not installed (no softhsm2-util on PATH)", shutil.which("softhsm2-util") is not None)
    require(f"SoftHSM2's PKCS#11 module {MODULE} is missing", MODULE.is_file())
    require("python-pkcs11 is not installed", importlib.util.find_spec("pkcs11") is not None)
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin_file = root / "pin"
    pin_file.write_text(PIN + "\n")  # the trailing newline `echo` leaves is not part of the PIN
    pin_file.chmod(0o600)
    hsm = SoftHsm(root, conf, pin_file)
    hsm.init_token(TOKEN)
    return hsm


def uri(label: str, token: str = TOKEN) -> str:
    return f"pkcs11:token={token};object={label}"


def grpcpki(pki: Path, *args: str, env: dict[str, str]) -> Result:
    return run_grpcpki("--pki", str(pki), *args, cwd=pki.parent, env=env)


def ok(result: Result) -> Result:
    assert result.code == 0, result.output
    assert PIN not in result.output
    return result


def openssl_verify(pki: Path, leaf: Path, *, untrusted: Path | None = None, crl: bool = True) -> Result:
    """`openssl verify` of a leaf against the PKI's ca.crt (and its CRLs with -crl_check)."""
    args = ["openssl", "verify", "-CAfile", str(pki / "ca.crt")]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    if crl:
        args += ["-crl_check", "-CRLfile", str(pki / "crl.pem")]
    proc = subprocess.run([*args, str(leaf)], capture_output=True, text=True, timeout=30)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def pem_private_keys(directory: Path) -> dict[Path, bytes]:
    """Every file under ``directory`` holding a PEM private key, with its SubjectPublicKeyInfo (DER)."""
    from cryptography.hazmat.primitives import serialization

    found = {}
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY-----" not in data:
            continue
        key = serialization.load_pem_private_key(data, password=None)
        found[path] = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return found


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(pki, *args, env=...)`` starts `grpcpki serve --listen 127.0.0.1:0 --json`; killed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(pki: Path, *args: str, env: dict[str, str]) -> Server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grpcpki", "--pki", str(pki), "serve", "--listen", "127.0.0.1:0", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env),
        )
        started.append(proc)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        if not line or not line[0].strip():
            proc.kill()
            raise AssertionError(f"serve did not start: {proc.communicate()[1]}")
        return Server(proc, int(json.loads(line[0])["port"]))

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
