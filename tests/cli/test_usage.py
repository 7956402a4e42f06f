"""Conventions every command follows: --help with an example, exit 2 naming the flag on misuse."""

from __future__ import annotations

import click
import pytest

from grpcpki.cli import LAZY_COMMANDS, cli
from support import run_grpcpki


def _all_commands() -> list[tuple[str, ...]]:
    """Every command path, subcommands included, from the real click tree."""
    paths: list[tuple[str, ...]] = []
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            paths.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(cli, ())
    return paths


COMMANDS = _all_commands()


def test_every_registered_command_exists() -> None:
    top = {path[0] for path in COMMANDS}
    assert set(LAZY_COMMANDS) <= top


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = run_grpcpki(*path, "--help")
    assert result.code == 0, result.output
    assert "Example" in result.stdout, f"`grpcpki {' '.join(path)} --help` has no example"


USAGE_ERRORS = [
    (["greet", "--server", "localhost:notaport"], "--server"),
    (["serve", "--listen", "nowhere"], "--listen"),
    (["probe", "localhost"], "HOST:PORT"),
    (["probe", "localhost:0"], "HOST:PORT"),
    (["list", "--expiring", "soon"], "--expiring"),
    (["init-ca", "--key-type", "dsa-1024"], "--key-type"),
    (["issue", "server", "x", "--days", "0"], "--days"),
    (["renew"], "--all"),
    (["bogus"], "No such command"),
]


@pytest.mark.parametrize(("args", "flag"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_and_name_the_flag(args: list[str], flag: str) -> None:
    result = run_grpcpki(*args)
    assert result.code == 2, result.output
    assert flag in result.stderr
    assert "Traceback" not in result.output
