"""Interactive passphrase prompts, driven through a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import cli_env, tree

pexpect = pytest.importorskip("pexpect", reason="pexpect is in the test extra: pip install '.[test]'")


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable, ["-m", "grpcpki", "--pki", str(tmp_path / "pki"), *args],
        cwd=str(tmp_path), env=cli_env(), encoding="utf-8", timeout=30,
    )


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    return child.exitstatus, output


def test_encrypt_asks_twice_and_issue_asks_once(tmp_path: Path) -> None:
    child = spawn(tmp_path, "init-ca", "--encrypt")
    child.expect("New CA key passphrase: ")
    child.sendline("correct horse")
    child.expect("Repeat for confirmation: ")
    child.sendline("correct horse")
    code, output = finish(child)
    assert code == 0, output
    assert "(encrypted)" in output and "correct horse" not in output
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "pki/ca/g1/root.key").read_bytes()

    child = spawn(tmp_path, "issue", "server", "localhost")
    child.expect("CA key passphrase: ")
    child.sendline("correct horse")
    code, output = finish(child)
    assert code == 0, output
    assert "issued server certificate 'localhost'" in output


def test_mismatched_confirmation_asks_again(tmp_path: Path) -> None:
    child = spawn(tmp_path, "init-ca", "--encrypt")
    child.expect("New CA key passphrase: ")
    child.sendline("one")
    child.expect("Repeat for confirmation: ")
    child.sendline("two")
    child.expect("do not match")
    child.expect("New CA key passphrase: ")
    child.sendline("three")
    child.expect("Repeat for confirmation: ")
    child.sendline("three")
    code, output = finish(child)
    assert code == 0, output


def test_wrong_passphrase_at_the_prompt(tmp_path: Path) -> None:
    child = spawn(tmp_path, "init-ca", "--encrypt")
    for prompt in ("New CA key passphrase: ", "Repeat for confirmation: "):
        child.expect(prompt)
        child.sendline("right")
    assert finish(child)[0] == 0
    before = tree(tmp_path / "pki")
    child = spawn(tmp_path, "issue", "server", "localhost")
    child.expect("CA key passphrase: ")
    child.sendline("wrong")
    code, output = finish(child)
    assert code == 1
    assert "wrong passphrase for CA key" in output and "Traceback" not in output
    assert tree(tmp_path / "pki") == before
