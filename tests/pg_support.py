"""A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir, on 127.0.0.1 with a
free port, stopped and deleted at the end of the session.

It uses Debian's ``postgresql`` (its binaries live in /usr/lib/postgresql/VERSION/bin, not on
PATH; `.ci/run` installs the package when it is missing) and psycopg from the test extra.
PostgreSQL refuses to run as root, so when the tests run as root (CI, these machines) ``initdb``
and ``pg_ctl`` run as the ``postgres`` user (``runuser``) in a directory that user owns: pytest's
own tmp_path is inside a root-only directory the server could not enter. Outside CI a missing
server or driver skips the tests that need it and says why; in CI (CI=true) it fails them.

Use: ``from pg_support import postgres, postgres_db`` in a conftest.py, then ask for
``postgres`` (the session's server, a :class:`PostgresServer`) or ``postgres_db`` (a new, empty
database of that server for one test, so tests never see each other's rows).

A uniquely named module (not a conftest) so ``from pg_support import ...`` works from any test folder.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "grpcpki"
START_TIMEOUT = 60  # seconds; a cold cluster on a loaded 2-core machine starts in about one
_database_names = itertools.count(1)


def require(what: str, present: bool) -> None:
    """Skip (outside CI) or fail (in CI) when a real component is missing."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: .ci/run and the test extra must install it)")
    pytest.skip(f"{what}; install Debian's postgresql and `pip install 'psycopg[binary]'` to run the PostgreSQL tests")


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), else initdb's on PATH."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server: trust authentication, loopback only."""

    host: str
    port: int
    user: str
    dbname: str
    base: Path  # holds data/, the socket and the log; deleted on stop

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq keyword/value string for psycopg.connect()."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname or self.dbname}"

    def url(self, dbname: str | None = None, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL, the form ``--db`` / ``GRPCPKI_DB`` take."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    @property
    def log(self) -> str:
        path = self.base / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(argv: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    return ["runuser", "-u", owner.pw_name, "--", *argv] if owner is not None else argv


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a new cluster, yield it, then stop it and delete every file it had."""
    bindir = postgres_bindir()
    require("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)", bindir is not None)
    assert bindir is not None
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        require("PostgreSQL will not run as root and there is no 'postgres' user to run it as", owner is not None)
        require("runuser (util-linux) is missing", shutil.which("runuser") is not None)
    base = Path(tempfile.mkdtemp(prefix="grpcpki-pg-"))
    try:
        if owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        data = base / "data"
        _run(
            _as_server_user(
                [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync"],
                owner,
            ),
            "initdb",
        )
        port = 0
        for attempt in range(3):
            port = _free_port()
            try:
                _pg_ctl_start(bindir, base, port, owner)
                break
            except RuntimeError:
                # Another process may have taken the port between the probe and the start.
                if attempt == 2:
                    raise
        server = PostgresServer("127.0.0.1", port, SUPERUSER, "postgres", base)
        try:
            yield server
        finally:
            # Immediate: nothing of a throwaway cluster needs a clean shutdown checkpoint.
            subprocess.run(
                _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], owner),
                capture_output=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _pg_ctl_start(bindir: Path, base: Path, port: int, owner: pwd.struct_passwd | None) -> None:
    # Loopback only, the socket in our own directory (not /var/run/postgresql, which may not
    # exist or belong to the machine's cluster). fsync off: a test cluster that dies with the
    # test run needs no durability, and syncing makes it slow.
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    _run(
        _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-o", options, "-l", str(base / "server.log"),
             "-w", "-t", str(START_TIMEOUT), "start"],
            owner,
        ),
        "pg_ctl start",
    )


@contextlib.contextmanager
def postgres_down(server: PostgresServer) -> Iterator[None]:
    """The running throwaway cluster stopped for the block (a database outage), then started
    again on the same port and data, whatever the block raised: the cluster is the session's."""
    bindir = postgres_bindir()
    assert bindir is not None
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    _run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(server.base / "data"), "-m", "fast", "-w",
                          "-t", str(START_TIMEOUT), "stop"], owner), "pg_ctl stop")
    try:
        yield
    finally:
        _pg_ctl_start(bindir, server.base, server.port, owner)


def restart_postgres(server: PostgresServer) -> None:
    """`pg_ctl restart` of a running throwaway cluster (same port, same data): every client
    connection is cut, as when a production database fails over or is upgraded."""
    bindir = postgres_bindir()
    assert bindir is not None
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    _run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(server.base / "data"), "-l", str(server.base / "server.log"),
                          "-m", "fast", "-w",
                          "-t", str(START_TIMEOUT), "restart"], owner), "pg_ctl restart")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session (started on first use)."""
    with running_postgres() as server:
        yield server


@contextlib.contextmanager
def throwaway_database(postgres: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``postgres`` for the block; its name. Dropped afterwards, with
    the connections a test or a killed server left open."""
    require_psycopg()
    import psycopg

    name = f"t{os.getpid()}_{next(_database_names)}"
    with psycopg.connect(postgres.conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        deadline = time.monotonic() + 10
        with psycopg.connect(postgres.conninfo(), autocommit=True) as admin:
            while True:
                try:
                    # WITH (FORCE) ends connections a failed test left open (PostgreSQL 13+).
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


@pytest.fixture
def postgres_db(postgres: PostgresServer) -> Iterator[str]:
    """A new, empty database on the session's server for one test; its name. Dropped afterwards."""
    with throwaway_database(postgres) as name:
        yield name


def require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require("psycopg is not installed", False)
