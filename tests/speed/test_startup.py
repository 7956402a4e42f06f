"""Fast start (issue 10): what `grpcpki --help` and `grpcpki list` import, and the short-help table.

Imports are read in a fresh interpreter from `python -X importtime`, which lists every module
the process loaded, so a stray top-level import anywhere on the path shows up here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from grpcpki.cli import LAZY_COMMANDS, SHORT_HELP, LazyGroup, cli
from support import cli_env, run_grpcpki

# What the commands that do not need them must not pay for at start-up.
HEAVY = ("cryptography.x509", "rich.progress", "grpc")


def imported_modules(*args: str, cwd: Path | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "grpcpki", *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    assert "click" in modules, "importtime output was not parsed"
    return modules


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_help_imports_no_command_module_and_nothing_heavy() -> None:
    modules = imported_modules("--help")
    assert heavy(modules) == set()
    assert not {m for m in modules if m.startswith("rich")}, "rich is only needed to show an error"
    assert not {m for m in modules if m.startswith("grpcpki.cli.") and m.endswith("_cmd")}


def test_list_imports_neither_cryptography_nor_grpc_nor_sqlalchemy(tmp_path: Path) -> None:
    """On the embedded SQLite inventory `list` reads through the standard library's sqlite3
    (grpcpki.engine.listing): SQLAlchemy's import alone cost ~0.2 s of start-up."""
    assert run_grpcpki("--pki", str(tmp_path / "pki"), "init-ca").code == 0
    for args in (["list"], ["list", "--json"], ["list", "--expiring", "30d"]):
        modules = imported_modules("--pki", str(tmp_path / "pki"), *args)
        assert heavy(modules) == set(), args
        assert not {m for m in modules if m.startswith(("cryptography", "sqlalchemy", "alembic"))}, args


def test_a_no_op_apply_imports_neither_cryptography_nor_sqlalchemy_nor_rich(tmp_path: Path) -> None:
    """A second `apply` with nothing to change plans from the inventory read through sqlite3
    (grpcpki.engine.applyplan): issue 10 wants it at a fifth of the first run, most of which was
    these imports. A change to make takes the full path, which imports them."""
    (tmp_path / "grpcpki.toml").write_text('[ca]\nname = "Fast CA"\n[[service]]\nname = "w{i}"\ncount = 2\n')
    pki = ["--pki", str(tmp_path / "pki")]
    assert run_grpcpki(*pki, "apply", cwd=tmp_path).code == 0
    for args in (["apply"], ["apply", "--dry-run", "--json"]):
        modules = imported_modules(*pki, *args, cwd=tmp_path)
        assert heavy(modules) == set(), args
        assert not {m for m in modules if m.startswith(("cryptography", "sqlalchemy", "alembic", "rich"))}, args
    (tmp_path / "grpcpki.toml").write_text('[ca]\nname = "Fast CA"\n[[service]]\nname = "w{i}"\ncount = 3\n')
    modules = imported_modules(*pki, "apply", "--dry-run", cwd=tmp_path)
    assert "sqlalchemy" in modules  # something to do: the full plan, under the store's rules
    # ... on the embedded SQLite inventory, without SQLAlchemy's PostgreSQL dialect (~25 ms).
    assert not {m for m in modules if m.startswith(("sqlalchemy.dialects.postgresql", "psycopg"))}


def test_the_schema_gives_postgresql_its_partial_index_on_demand() -> None:
    """schema.py leaves PostgreSQL's WHERE out at import (it would load the dialect);
    postgresql_options(), which the Alembic environment calls, puts it back."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from grpcpki.engine import schema

    schema.postgresql_options()
    ddl = str(CreateIndex(schema.one_active_leaf_per_kind).compile(dialect=postgresql.dialect()))
    assert ddl.endswith("(name, kind) WHERE status = 'active' AND kind IN ('server', 'client')"), ddl


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_short_help_table_matches_the_command(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    actual = command.get_short_help_str(10**6)
    assert SHORT_HELP.get(name) == actual, f"set SHORT_HELP[{name!r}] = {actual!r} in grpcpki/cli/__init__.py"


def test_help_lists_what_an_eager_group_would() -> None:
    """The rendered help equals click's own rendering with every command imported."""

    class Eager(LazyGroup):
        format_commands = click.Group.format_commands

    eager = Eager(name="grpcpki", params=cli.params, callback=cli.callback, help=cli.help)
    for name in cli.list_commands(click.Context(cli)):
        loaded = cli.get_command(click.Context(cli), name)
        assert loaded is not None
        eager.add_command(loaded, name)
    for width in (60, 80, 120):
        lazy_help = cli.get_help(click.Context(cli, info_name="grpcpki", terminal_width=width))
        eager_help = eager.get_help(click.Context(eager, info_name="grpcpki", terminal_width=width))
        assert "Commands:" in lazy_help and lazy_help == eager_help
