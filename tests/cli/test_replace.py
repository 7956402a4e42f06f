"""issue --replace, and the fix lines doctor prints actually fix what doctor found."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

from support import Result, assert_clean_error


def test_issue_replace_supersedes_and_archives(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("init-ca").code == 0
    first = json.loads(cli("issue", "server", "api.example.com", "--json").stdout)
    assert_clean_error(cli("issue", "server", "api.example.com", "--ip", "10.0.0.7"), "already exists", "--replace")
    second = json.loads(cli("issue", "server", "api.example.com", "--ip", "10.0.0.7", "--replace", "--json").stdout)
    assert second["sans"] == ["DNS:api.example.com", "IP:10.0.0.7"]
    assert second["serial"] != first["serial"]
    history = json.loads(cli("list", "--all", "--kind", "server", "--json").stdout)
    assert {(r["serial"], r["status"]) for r in history} == {(first["serial"], "superseded"), (second["serial"], "active")}
    assert (tmp_path / "pki/archive/api.example.com" / first["serial"] / "cert.pem").is_file()
    # --replace with nothing to replace simply issues.
    assert cli("issue", "client", "fresh", "--spiffe-id", "spiffe://example.org/fresh", "--replace").code == 0


def test_doctor_fix_line_resolves_the_finding(cli: Callable[..., Result]) -> None:
    assert cli("init-ca").code == 0
    assert cli("issue", "server", "api", "--dns", "api.internal").code == 0
    report = cli("doctor", "api", "--host", "10.0.0.7", "--json")
    assert report.code == 1, report.output
    findings = [f for entry in json.loads(report.stdout)["checked"] for f in entry["findings"]]
    [mismatch] = [f for f in findings if f["id"] == "name-mismatch"]
    argv = shlex.split(mismatch["fix"])
    assert argv[:4] == ["grpcpki", "issue", "server", "api"] and "--replace" in argv
    assert cli(*argv[1:]).code == 0
    after = cli("doctor", "api", "--host", "10.0.0.7", "--json")
    assert after.code == 0, after.output
    assert cli("doctor", "api", "--host", "api.internal").code == 0  # the old name still works
