"""The PostgreSQL fixture gives a real, isolated, loopback-only server (issue 13's shared inventory
builds on it), and cleans up after itself."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pg_support import PostgresServer, require_psycopg, running_postgres


def test_a_database_per_test_on_a_real_server(postgres: PostgresServer, postgres_db: str) -> None:
    require_psycopg()
    import psycopg

    with psycopg.connect(postgres.conninfo(postgres_db)) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 130000  # DROP DATABASE ... WITH (FORCE)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        socket_dir = conn.execute("SHOW unix_socket_directories").fetchone()
        assert socket_dir == (str(postgres.base),)
        # Serials are text (159-bit serials overflow BIGINT) and uniqueness is the server's job.
        conn.execute("CREATE TABLE certificates (serial text PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO certificates VALUES (%s, %s)", (format(2**158 + 1, "x"), "web"))
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO certificates VALUES (%s, %s)", (format(2**158 + 1, "x"), "api"))
        conn.rollback()

    # Row locks across connections: the second writer waits until the first commits.
    order: list[str] = []
    with psycopg.connect(postgres.conninfo(postgres_db)) as first:
        first.execute("SELECT name FROM certificates FOR UPDATE").fetchall()

        def second_writer() -> None:
            with psycopg.connect(postgres.conninfo(postgres_db)) as second:
                second.execute("UPDATE certificates SET name = 'second'")
                second.commit()
                order.append("second")

        thread = threading.Thread(target=second_writer)
        thread.start()
        # The server itself reports the second writer waiting for the first one's row lock.
        with psycopg.connect(postgres.conninfo(postgres_db), autocommit=True) as observer:
            deadline = time.monotonic() + 20
            while True:
                waiting = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (postgres_db,),
                ).fetchone()
                if waiting == (1,):
                    break
                assert time.monotonic() < deadline, "the second writer never waited for the row lock"
                time.sleep(0.05)
        assert thread.is_alive()
        first.execute("UPDATE certificates SET name = 'first'")
        order.append("first")  # before the commit: the second writer cannot get past its UPDATE until then
        first.commit()
        thread.join(10)
    assert order == ["first", "second"]
    with psycopg.connect(postgres.conninfo(postgres_db)) as conn:
        assert conn.execute("SELECT name FROM certificates").fetchall() == [("second",)]


def test_each_test_gets_an_empty_database(postgres: PostgresServer, postgres_db: str) -> None:
    require_psycopg()
    import psycopg

    with psycopg.connect(postgres.conninfo(postgres_db)) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
    assert postgres.url(postgres_db) == f"postgresql+psycopg://grpcpki@127.0.0.1:{postgres.port}/{postgres_db}"


def test_a_cluster_is_stopped_and_deleted_at_the_end() -> None:
    require_psycopg()
    import psycopg

    with running_postgres() as server:
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        base, port = server.base, server.port
    assert not base.exists()
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", port))
