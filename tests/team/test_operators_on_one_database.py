"""Operators' tools on a shared PostgreSQL inventory (a real throwaway server, tests/pg_support.py):
shell completion of names from the database."""

from __future__ import annotations

import socket
from pathlib import Path


from pg_support import PostgresServer, require_psycopg
from support import run_grpcpki


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
