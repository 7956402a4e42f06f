"""The engine's parsers of user input, table-driven: durations, days, PEM splitting, reading files."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from grpcpki.engine.durations import DurationError, format_duration, parse_days, parse_duration
from grpcpki.engine.errors import GrpcpkiError, NotFoundError
from grpcpki.engine.pem import certificate_blocks, split_pem
from grpcpki.engine.storage import read_file

DURATIONS = [
    ("90d", timedelta(days=90)),
    ("12h", timedelta(hours=12)),
    ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)),
    ("45s", timedelta(seconds=45)),
    ("500ms", timedelta(milliseconds=500)),
    ("1.5h", timedelta(minutes=90)),
    (" 7D ", timedelta(days=7)),
    ("0s", timedelta(0)),
    ("36500d", timedelta(days=36500)),
]


@pytest.mark.parametrize(("text", "expected"), DURATIONS, ids=[t for t, _ in DURATIONS])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


BAD_DURATIONS = [
    ("30", "has no unit"),
    ("0.5", "has no unit"),
    ("", "invalid duration"),
    ("d", "invalid duration"),
    ("-1d", "invalid duration"),
    ("1y", "invalid duration"),
    ("1d2h", "invalid duration"),
    ("٣d", "invalid duration"),  # Arabic-Indic digit: \d would take it without re.ASCII
    ("36501d", "longer than 36500d"),
    ("9" * 5000 + "d", "invalid duration"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DURATIONS, ids=[t[:12] or "empty" for t, _ in BAD_DURATIONS])
def test_bad_durations_say_how_to_write_one(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert message in info.value.message
    assert info.value.hint


def test_duration_bounds() -> None:
    with pytest.raises(DurationError, match="shorter than 1s"):
        parse_duration("500ms", minimum=timedelta(seconds=1))
    with pytest.raises(DurationError, match="longer than 1h"):
        parse_duration("61m", maximum=timedelta(hours=1))


@pytest.mark.parametrize("value", [timedelta(days=36500), timedelta(weeks=2), timedelta(seconds=90), timedelta(0),
                                   timedelta(milliseconds=1500)])
def test_format_duration_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_days() -> None:
    assert parse_days("90") == 90
    assert parse_days("90d") == 90
    for bad in ("12h", "", "d", "1.5", "-3", "0"):
        with pytest.raises(DurationError):
            parse_days(bad)


CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
PEM_CASES = [
    (b"", []),
    (CERT, ["CERTIFICATE"]),
    (b"subject=CN=x\n" + CERT + b"junk\n" + KEY, ["CERTIFICATE", "PRIVATE KEY"]),
    (CERT.replace(b"\n", b"\r\n"), ["CERTIFICATE"]),
    (b"-----BEGIN CERTIFICATE-----\n" * 3 + CERT, ["CERTIFICATE"]),  # BEGIN restarts the block
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END PRIVATE KEY-----\n", []),  # labels must agree
    (b"-----BEGIN CERTIFICATE-----\n" * 10, []),
    (b"-----BEGIN -----\n-----END -----\n", [""]),  # RFC 7468 3: the label may be empty
]


@pytest.mark.parametrize(("data", "labels"), PEM_CASES, ids=[str(i) for i in range(len(PEM_CASES))])
def test_split_pem(data: bytes, labels: list[str]) -> None:
    assert [b.label for b in split_pem(data)] == labels


def test_certificate_blocks_are_exact() -> None:
    assert certificate_blocks(b"x\n" + CERT + CERT) == [CERT, CERT]


def test_split_pem_reads_hostile_input_in_one_pass() -> None:
    # 200,000 unterminated BEGIN lines: a quadratic splitter would never finish.
    assert split_pem(b"-----BEGIN CERTIFICATE-----\n" * 200_000) == []


def test_read_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        read_file(tmp_path / "missing.pem", "certificate")
    with pytest.raises(NotFoundError, match="is a directory"):
        read_file(tmp_path, "certificate")
    with pytest.raises(GrpcpkiError, match="character device"):
        read_file(Path("/dev/zero"), "certificate")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GrpcpkiError, match="named pipe"):
        read_file(fifo, "certificate")
    with pytest.raises(GrpcpkiError, match="NUL byte"):
        read_file(Path("a\x00b"), "certificate")
    with pytest.raises(GrpcpkiError, match="File name too long"):
        read_file(tmp_path / ("a" * 300), "certificate")


def test_read_file_cap(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_file(path, limit=100) == b"x" * 100
    with pytest.raises(GrpcpkiError, match="larger than"):
        read_file(path, limit=99)
