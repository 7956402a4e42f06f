"""`grpcpki list` for scripts and humans (issue 11 item 6, issue 10): expiry order, expired state,
CA rows, plain piped rows, streamed JSON with days left, serials as OpenSSL prints them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from grpcpki.engine import Pki, Role
from grpcpki.engine.inventory import Inventory, openssl_serial
from support import OPENSSL, assert_clean_error, cli_env, requires_openssl, run_grpcpki

NOW = datetime.now(UTC)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A root + intermediate, an expired server, a client due in 10 days, a fresh server."""
    path = tmp_path / "pki"
    made = Pki.init(path, name="Speed CA", intermediate=True, now=NOW - timedelta(days=100))
    made.issue(Role.SERVER, "old", days=30, now=NOW - timedelta(days=40))  # expired 10 days ago
    made.issue(Role.CLIENT, "soon", days=30, now=NOW - timedelta(days=20),
               sans=["spiffe://example.org/soon"])  # 10 days left
    made.issue(Role.SERVER, "fresh", days=90, sans=["10.0.0.7", "fresh.internal"])
    made.inventory.close()
    return path


def grpcpki(pki: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "grpcpki", "--pki", str(pki), *args],
                          env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def rows(pki: Path, *args: str) -> list[list[str]]:
    return [line.split("\t") for line in grpcpki(pki, "list", *args).stdout.splitlines()]


def test_piped_rows_sorted_by_expiry_with_ca_and_expired_state(pki: Path) -> None:
    listed = rows(pki)
    assert [r[0] for r in listed] == ["old", "soon", "fresh", "Speed CA Issuing CA", "Speed CA"]
    assert [r[1] for r in listed] == ["server", "client", "server", "intermediate", "root"]
    assert [r[2] for r in listed] == ["expired", "active", "active", "active", "active"]
    assert all(len(r) == 7 for r in listed), "one tab-separated row per certificate"
    assert int(listed[0][4]) < 0 and 9 <= int(listed[1][4]) <= 10
    assert listed[2][6] == "DNS:fresh,DNS:fresh.internal,IP:10.0.0.7"
    output = grpcpki(pki, "list").stdout
    assert not set("─│┃━╭") & set(output), "no box drawing when piped"


def test_expired_before_and_expiring_filters(pki: Path) -> None:
    assert [r[0] for r in rows(pki, "--expired")] == ["old"]
    assert [r[0] for r in rows(pki, "--expiring", "30d")] == ["old", "soon"]
    before = (NOW + timedelta(days=60)).strftime("%Y-%m-%d")
    assert [r[0] for r in rows(pki, "--before", before)] == ["old", "soon"]
    assert [r[0] for r in rows(pki, "--kind", "root")] == ["Speed CA"]
    assert [r[0] for r in rows(pki, "--limit", "2")] == ["old", "soon"]


def test_conflicting_filters_are_a_usage_error(pki: Path) -> None:
    result = run_grpcpki("--pki", str(pki), "list", "--expired", "--before", "2030-01-01")
    assert result.code == 2 and "--expired and --before" in result.stderr
    result = run_grpcpki("--pki", str(pki), "list", "--before", "soon")
    assert result.code == 2 and "--before" in result.stderr


def test_json_is_one_array_with_days_left_and_state(pki: Path) -> None:
    data = json.loads(grpcpki(pki, "list", "--json").stdout)
    assert isinstance(data, list) and [d["name"] for d in data][:3] == ["old", "soon", "fresh"]
    old = data[0]
    assert old["status"] == "active" and old["state"] == "expired" and old["days_left"] < 0
    assert data[1]["days_left"] in (9, 10)
    assert old["not_after"].endswith("Z") and old["serial_openssl"] == old["serial"].upper().zfill(len(old["serial"]) + len(old["serial"]) % 2)
    assert json.loads(grpcpki(pki, "list", "--json", "--kind", "cross").stdout) == []


@requires_openssl
def test_serials_match_openssl(pki: Path) -> None:
    listed = {r[0]: r[5] for r in rows(pki)}
    for name in ("old", "soon", "fresh"):
        printed = subprocess.run([str(OPENSSL), "x509", "-noout", "-serial", "-in", str(pki / "certs" / name / "cert.pem")],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert printed == f"serial={listed[name]}"


@pytest.mark.parametrize(("serial_hex", "printed"), [("a3f", "0A3F"), ("5a3f", "5A3F"), ("1", "01")])
def test_openssl_serial_pads_to_whole_bytes(serial_hex: str, printed: str) -> None:
    assert openssl_serial(serial_hex) == printed


def test_iter_records_streams_in_expiry_order_and_counts(pki: Path) -> None:
    inventory = Inventory(pki / "inventory.db", pki)
    streamed = inventory.iter_records(kinds=("server", "client"))
    assert next(streamed).name == "old"
    assert [r.name for r in streamed] == ["soon", "fresh"]
    assert inventory.count(kinds=("server", "client")) == 3
    assert inventory.count(expiring_before=NOW) == 1
    assert [r.name for r in inventory.query(kinds=("server",))] == ["old", "fresh"]
    inventory.close()


def test_missing_pki_is_one_line(tmp_path: Path) -> None:
    assert_clean_error(run_grpcpki("--pki", str(tmp_path / "nothing"), "list"), "no CA in")


def test_renew_dry_run_prints_what_is_due_and_a_summary(pki: Path) -> None:
    result = grpcpki(pki, "renew", "--all", "--dry-run")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("would renew server old: expired on")
    assert lines[1].startswith("would renew client soon:")
    assert lines[2].startswith("dry run: 2 would be renewed, 1 not due; the next falls due on")
    assert len(lines) == 3 and "fresh" in lines[2]
    document = json.loads(grpcpki(pki, "renew", "--all", "--dry-run", "--json").stdout)
    assert [c["name"] for c in document["certificates"]] == ["old", "soon"]
    assert (document["would_renew"], document["skipped"], document["renewed"]) == (2, 1, 0)


def test_listing_rows_carry_what_records_do(pki: Path) -> None:
    """list reads Inventory.iter_listing (tuples, paths as text): the same facts as iter_records."""
    inventory = Inventory(pki / "inventory.db", pki)
    records = [r.to_dict() for r in inventory.iter_records(statuses=None)]
    listed = [r.to_dict() for r in inventory.iter_listing(statuses=None)]
    inventory.close()
    assert listed == records and len(listed) == 5


def test_a_terminal_gets_the_rows_that_fit_and_a_count(pki: Path) -> None:
    pexpect = pytest.importorskip("pexpect", reason="pexpect is in the test extra: pip install '.[test]'")
    made = Pki.open(pki)
    from grpcpki.engine.pki import LeafRequest

    made.issue_many([LeafRequest(Role.SERVER, f"svc-{i:02}") for i in range(30)])
    made.inventory.close()
    child = pexpect.spawn(sys.executable, ["-m", "grpcpki", "--pki", str(pki), "list"],
                          env=cli_env() | {"TERM": "xterm"}, encoding="utf-8", timeout=30, dimensions=(20, 160))
    child.expect(pexpect.EOF)
    output = re.sub(r"\x1b\[[0-9;]*m", "", child.before).replace("\r", "")
    child.close()
    assert child.exitstatus == 0, output
    rows = [line for line in output.splitlines() if line.startswith("│")]
    assert len(rows) == 13 and "old" in rows[0] and "expired" in rows[0]  # 20 lines - 7 of chrome
    assert "showing 13 of 35, soonest expiry first" in output
    assert all(len(line) <= 160 for line in output.splitlines())
