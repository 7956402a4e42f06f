"""Hostile input through the real entry point: every bad value ends in one clear line, exit 1
(or 2 for a usage error naming the flag), and nothing written. Table-driven: one row per case
from issue 9, so a regression names the input that broke."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from support import Result, assert_clean_error, tree

BAD_URIS = [
    ("http://:80", "has no host"),
    ("http://@", "has no host"),
    ("http://a:99999", "invalid port"),
    ("https://a/<script>", "'<'"),
    ("https://a/%zz", "%XX escape"),
    ("https://a/\x01", "control"),
    ("https://a/b c", "spaces"),
    ("http://[::1", "unclosed '['"),
    ("http://[::1]x/", "after its IPv6 host"),
    ("https://[fe80::1%25eth0]/", "invalid IPv6 host"),
    ("https://xn--zz/", "A-label"),
    ("https://a:80:90/", "invalid port"),
    ("https://a/{x}", "'{'"),
]


@pytest.fixture
def pki(cli: Callable[..., Result], tmp_path: Path) -> Path:
    assert cli("init-ca").code == 0
    return tmp_path / "pki"


@pytest.mark.parametrize(("uri", "message"), BAD_URIS, ids=[repr(u) for u, _ in BAD_URIS])
def test_bad_uri_sans_are_refused_before_signing(cli: Callable[..., Result], pki: Path, uri: str, message: str) -> None:
    before = tree(pki)
    result = cli("issue", "server", "svc", "--uri", uri)
    assert_clean_error(result, message)
    assert tree(pki) == before
    assert "svc" not in cli("list", "--json").stdout


@pytest.mark.parametrize("name", ["xn--zz", "xn--a.example", "api.xn--zz.example"])
def test_dns_a_labels_must_decode(cli: Callable[..., Result], pki: Path, name: str) -> None:
    result = cli("issue", "server", "svc", "--dns", name)
    assert_clean_error(result, "not a valid IDNA A-label")


def test_valid_idna_and_uri_sans_still_sign(cli: Callable[..., Result], pki: Path) -> None:
    result = cli(
        "issue", "server", "svc", "--dns", "xn--bcher-kva.example", "--dns", "bücher.example",
        "--uri", "https://user@[2001:db8::1]:8443/a/b%20c?q=1#f", "--json",
    )
    assert result.code == 0, result.output
    assert "URI:https://user@[2001:db8::1]:8443/a/b%20c?q=1#f" in result.stdout
    assert "DNS:xn--bcher-kva.example" in result.stdout


LONG = "a" * 300
USAGE_CASES = [
    (["list", "--expiring", "99999999999999d"], "--expiring", "longer than 36500d"),
    (["list", "--expiring", "9" * 5000 + "d"], "--expiring", "invalid duration"),
    (["list", "--expiring", "30"], "--expiring", "has no unit"),
    (["renew", "--all", "--within", "7"], "--within", "write 7d for days"),
    (["renew", "--all", "--watch", "0s"], "--watch", "shorter than 1s"),
    (["greet", "--interval", "2"], "--interval", "2s for seconds"),
    (["greet", "--timeout", "0s"], "--timeout", "shorter than"),
    (["serve", "--grace", "5"], "--grace", "has no unit"),
    (["probe", "localhost:1", "--timeout", "5"], "--timeout", "has no unit"),
    (["issue", "server", "x", "--days", "12h"], "--days", "whole number of days"),
    (["issue", "server", "x", "--days", "99999999999999999999"], "--days", "whole number of days"),
    (["init-ca", "--days", "36501"], "--days", "1 to 36500"),
    (["init-ca", "--name", ""], "--name", "is empty"),
    (["init-ca", "--name", "a" * 65], "--name", "limit is 48"),
    (["init-ca", "--name", "tab\there"], "--name", "control characters"),
    (["init-ca", "--org", "o" * 65], "--org", "limit is 64"),
    (["inspect", LONG], "NAME|FILE", "at most 255"),
    (["list", "--pki", "/tmp/" + LONG], "--pki", "at most 255"),
    (["list", "--pki", "/x" * 2100], "--pki", "the limit is 4095"),
    (["doctor", "--cert", LONG], "--cert", "at most 255"),
]


@pytest.mark.parametrize(("args", "flag", "message"), USAGE_CASES, ids=[" ".join(a)[:60] for a, _, _ in USAGE_CASES])
def test_out_of_range_values_are_usage_errors_naming_the_flag(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], flag: str, message: str
) -> None:
    result = cli(*args)
    assert_clean_error(result, flag, message, code=2)
    assert "unexpected error" not in result.output
    assert not (tmp_path / "pki").exists()


def test_a_long_pki_from_the_environment_is_a_usage_error(cli: Callable[..., Result], tmp_path: Path) -> None:
    from support import run_grpcpki

    result = run_grpcpki("list", env={"GRPCPKI_HOME": "/tmp/" + LONG}, cwd=tmp_path)
    assert_clean_error(result, "--pki", "at most 255", code=2)


# -- files that doctor / inspect / serve read ----------------------------------------------------


def test_devices_are_refused_not_read(cli: Callable[..., Result], pki: Path) -> None:
    assert_clean_error(cli("inspect", "/dev/zero"), "/dev/zero is a character device")
    result = cli("doctor", "--cert", "/dev/zero")
    assert result.code == 1 and "character device" in result.output and "Traceback" not in result.output


def test_a_fifo_is_refused_without_blocking(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    # No writer ever opens the FIFO: a plain open() would block until the 60 s subprocess timeout.
    assert_clean_error(cli("inspect", str(fifo)), "named pipe (FIFO)")
    result = cli("doctor", "--cert", str(fifo))
    assert result.code == 1 and "named pipe" in result.output
    result = cli("serve", "--cert", str(fifo), "--key", str(fifo), "--ca", str(pki / "ca.crt"))
    assert_clean_error(result, "named pipe")


def test_files_over_the_size_cap_are_refused(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    from grpcpki.engine.storage import MAX_INPUT_BYTES

    big = tmp_path / "big.pem"
    with big.open("wb") as handle:
        handle.truncate(MAX_INPUT_BYTES + 1)  # sparse: costs no disk, and is never read
    assert_clean_error(cli("inspect", str(big)), "larger than 8 MiB")
    result = cli("doctor", "--cert", str(big))
    assert result.code == 1 and "larger than 8 MiB" in result.output


def test_unterminated_pem_blocks_are_read_quickly(cli: Callable[..., Result], pki: Path, tmp_path: Path) -> None:
    # Issue 9: 8,000 of these took 43 s through a backreferencing regex (quadratic). 64,000 here
    # would take about an hour that way; the line scanner (engine/pem.py) reads them at once.
    hostile = tmp_path / "hostile.pem"
    hostile.write_bytes(b"-----BEGIN CERTIFICATE-----\n" * 64_000)
    result = cli("doctor", "--cert", str(hostile))
    assert result.code == 1 and "no PEM block" in result.output, result.output
    assert_clean_error(cli("inspect", str(hostile)), "damaged certificate")
