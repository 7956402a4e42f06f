"""One writer at a time: waiting writers say whom they wait for and give up cleanly; readers never wait."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from store_support import assert_store_consistent, hold_lock, wait_gone

from support import Result, assert_clean_error, tree

Cli = Callable[..., Result]


@pytest.fixture
def pki_dir(cli: Cli, tmp_path: Path) -> Path:
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "localhost").code == 0
    return tmp_path / "pki"


def test_a_waiting_writer_names_the_holder_and_gives_up_after_the_timeout(cli: Cli, pki_dir: Path) -> None:
    holder = hold_lock(pki_dir, 30)
    try:
        before = tree(pki_dir)
        result = cli("issue", "server", "api", "--lock-timeout", "1s")
        assert result.code == 1 and "Traceback" not in result.output
        lines = result.stderr.splitlines()
        assert lines[0] == (
            f"waiting for PID {holder.pid} (grpcpki renew) to finish with {pki_dir} "
            "(giving up after 1s; --lock-timeout changes it)"
        )
        assert lines[1].startswith(f"error: gave up after 1s waiting for PID {holder.pid} (grpcpki renew)")
        assert len(lines) == 2
        assert tree(pki_dir) == before
        # The environment variable does the same; 0 means do not wait at all (and say nothing first).
        quick = cli("revoke", "localhost", env={"GRPCPKI_LOCK_TIMEOUT": "0s"})
        assert_clean_error(quick, f"gave up after 0s waiting for PID {holder.pid}")
    finally:
        wait_gone(holder)
    assert_store_consistent(pki_dir)


def test_a_waiting_writer_proceeds_once_the_holder_is_done(cli: Cli, pki_dir: Path) -> None:
    holder = hold_lock(pki_dir, 1.5)
    try:
        result = cli("issue", "server", "api")
    finally:
        holder.wait(timeout=30)
    assert result.code == 0, result.output
    assert f"waiting for PID {holder.pid} (grpcpki renew)" in result.stderr
    assert_store_consistent(pki_dir)


def test_readers_never_wait_for_a_writer(cli: Cli, pki_dir: Path) -> None:
    holder = hold_lock(pki_dir, 60)
    try:
        for args in (
            ("list",),
            ("inspect", "localhost"),
            ("ca", "rotate", "status"),
            ("renew", "--all", "--dry-run"),
            ("doctor", "localhost"),
        ):
            result = cli(*args, "--lock-timeout", "0s")
            assert result.code == 0, (args, result.output)
            assert "waiting for" not in result.stderr, args
        assert holder.poll() is None  # all of them finished while the lock was held
    finally:
        wait_gone(holder)


def test_bad_lock_timeouts_are_clean_errors(cli: Cli, pki_dir: Path) -> None:
    assert_clean_error(cli("issue", "server", "x", "--lock-timeout", "-1"), "--lock-timeout", code=2)
    assert_clean_error(cli("issue", "server", "x", env={"GRPCPKI_LOCK_TIMEOUT": "soon"}), "GRPCPKI_LOCK_TIMEOUT")
