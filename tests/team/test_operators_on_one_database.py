"""Operators' tools on a shared PostgreSQL inventory (a real throwaway server, tests/pg_support.py):
`doctor --store` with two operators' PKI directories on one database (each checks the files of
the certificates it made, reports the other's as information, and `--repair` leaves them alone),
and shell completion of names from the database."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from pg_support import PostgresServer, require_psycopg
from support import run_grpcpki


def _store(url: str, pki: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_grpcpki("--db", url, "--pki", str(pki), "doctor", "--store", "--json", *extra)
    assert "Traceback" not in result.output, result.output
    return result.code, json.loads(result.stdout)


def _ids(report: dict) -> list[str]:  # type: ignore[type-arg]
    return [p["id"] for p in report["problems"]]


def _check(pki: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    """`doctor --store --json` in-process (GRPCPKI_DB set by the test): the CLI runs are above."""
    from grpcpki.engine.consistency import check_store
    from grpcpki.engine.pki import Pki

    opened = Pki.open(pki)
    try:
        problems = [p.to_dict() for p in check_store(opened)]
    finally:
        opened.inventory.close()
    return int(any(p["severity"] == "error" for p in problems)), {"problems": problems}


def test_each_operator_checks_its_own_files_and_names_the_others_origin(
    tmp_path: Path, postgres: PostgresServer, postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_psycopg()
    import psycopg

    url = postgres.url(postgres_db)
    monkeypatch.setenv("GRPCPKI_DB", url)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert run_grpcpki("--db", url, "--pki", str(alice), "init-ca").code == 0
    shutil.copytree(alice, bob)  # bob gets the CA (docs/team.md), no certificates yet
    for pki, kind, name in ((alice, "server", "web"), (alice, "client", "ops"), (bob, "server", "api")):
        issued = run_grpcpki("--db", url, "--pki", str(pki), "issue", kind, name)
        assert issued.code == 0, issued.output
    host = socket.gethostname()

    code, report = _store(url, bob)
    assert code == 0 and report["ok"], report
    assert _ids(report) == ["store-issued-elsewhere"], report
    elsewhere = report["problems"][0]
    assert elsewhere["severity"] == "info" and not elsewhere["repairable"]
    assert f"2 active certificate(s) issued from {host}:{alice.resolve()}" in elsewhere["message"]
    assert "server web" in elsewhere["message"] and "client ops" in elsewhere["message"]
    # The plain doctor checks only bob's certificate too (it used to fail on alice's).
    plain = run_grpcpki("--db", url, "--pki", str(bob), "doctor", "--json")
    assert plain.code == 0, plain.output
    assert sorted(c["name"] for c in json.loads(plain.stdout)["checked"] if c["kind"] in ("server", "client")) == ["api"]

    # Bob's own files are still checked: a missing one is an error, found from bob's side only.
    (bob / "certs" / "api" / "cert.pem").unlink()
    code, report = _check(bob)
    assert code == 1 and "store-file-missing" in _ids(report), report
    code, report = _check(alice)
    assert code == 0 and _ids(report) == ["store-issued-elsewhere"], report
    assert f"issued from {host}:{bob.resolve()}" in report["problems"][0]["message"]

    # --repair in bob's directory never touches alice's rows.
    with psycopg.connect(postgres.conninfo(postgres_db)) as db:
        before = db.execute("SELECT serial, status, cert_path, origin FROM certificates ORDER BY serial").fetchall()
    code, report = _store(url, bob, "--repair")
    assert code == 1 and report["repaired"] == [], report
    with psycopg.connect(postgres.conninfo(postgres_db)) as db:
        assert db.execute("SELECT serial, status, cert_path, origin FROM certificates ORDER BY serial").fetchall() == before
        # A row from before origins were recorded: its certs/ folder says whose it is.
        db.execute("UPDATE certificates SET origin = NULL WHERE name = 'web'")
    code, report = _check(bob)
    assert any("before grpcpki recorded" in p["message"] and "server web" in p["message"] for p in report["problems"])
    code, report = _check(alice)
    assert code == 0 and "server web" not in report["problems"][0]["message"], report
    (alice / "certs" / "web" / "key.pem").unlink()
    code, report = _check(alice)
    assert code == 1 and "store-file-missing" in _ids(report), report


def _complete(words: str, cwd: Path, env: dict[str, str]) -> list[str]:
    """What bash completion offers for the last word of WORDS (click's bash_complete protocol)."""
    parts = words.split(" ")
    result = run_grpcpki(
        cwd=cwd, timeout=30,
        env={"_GRPCPKI_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), **env},
    )
    assert result.code == 0 and result.stderr == "", result.output
    return [line.partition(",")[2] for line in result.stdout.splitlines() if line.startswith("plain,")]


def test_names_complete_from_the_database_read_only(tmp_path: Path, postgres: PostgresServer, postgres_db: str) -> None:
    require_psycopg()
    import psycopg

    url = postgres.url(postgres_db)
    pki = tmp_path / "pki"
    # A database grpcpki never used: nothing offered, and nothing created (no migration on <TAB>).
    assert _complete(f"grpcpki --db {url} --pki {pki} export ", tmp_path, {}) == []
    with psycopg.connect(postgres.conninfo(postgres_db)) as db:
        assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    assert run_grpcpki("--db", url, "--pki", str(pki), "init-ca").code == 0
    for kind, name in (("server", "api"), ("server", "web"), ("client", "web"), ("client", "ops")):
        assert run_grpcpki("--db", url, "--pki", str(pki), "issue", kind, name).code == 0
    # --db on the command line, and GRPCPKI_DB; names another PKI directory issued are offered too.
    assert _complete(f"grpcpki --db {url} --pki {tmp_path / 'other'} export ", tmp_path, {}) == [
        "api", "ops", "server/web", "client/web"]
    assert _complete(f"grpcpki --pki {pki} greet --name ", tmp_path, {"GRPCPKI_DB": url}) == ["ops", "web"]
    assert _complete(f"grpcpki --pki {pki} renew a", tmp_path, {"GRPCPKI_DB": url}) == ["api"]
    # Down, refusing, or silent servers and bad URLs: no names, no output on the prompt, no hang.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever answers the startup packet
        port = silent.getsockname()[1]
        for bad in (f"postgresql+psycopg://grpcpki@127.0.0.1:{port}/pki", "postgresql://grpcpki@127.0.0.1:1/pki",
                    "mysql://x@127.0.0.1/pki", "not a url", f"postgresql+psycopg://nobody@{postgres.host}:{postgres.port}/none"):
            assert _complete(f"grpcpki --pki {pki} export ", tmp_path, {"GRPCPKI_DB": bad}) == [], bad
