"""``grpcpki doctor --store [--repair]``: the store's consistency (engine/consistency.py), rendered.

Kept apart from diagnose_cmd.py so that the doctor command only gains two flags and one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click
from rich.text import Text

from grpcpki.cli import console
from grpcpki.cli.context import App

if TYPE_CHECKING:
    from grpcpki.engine.consistency import StoreProblem


def doctor_store(app: App, *, repair: bool, as_json: bool) -> None:
    """Check (and with ``repair`` fix) the store; exit 1 if an error remains."""
    from grpcpki.engine.consistency import check_store, repair_store

    pki = app.pki()
    repaired = repair_store(pki) if repair else []
    problems = check_store(pki, thorough=True)
    if as_json:
        console.print_json(
            {
                "ok": not any(p.severity == "error" for p in problems),
                "repaired": repaired,
                "problems": [p.to_dict() for p in problems],
            }
        )
    else:
        for line in repaired:
            console.success(line)
        render(problems)
        if all(p.severity == "info" for p in problems):
            console.success(f"the store in {pki.path} is consistent: every file has its row, every row its files")
    if any(p.severity == "error" for p in problems):
        raise click.exceptions.Exit(1)


def render(problems: Sequence[StoreProblem]) -> None:
    """One line per problem (plain text: paths and names come from outside), then its fix."""
    out = console.out()
    for problem in problems:
        style, mark = {"error": ("bold red", "✗"), "warning": ("yellow", "!")}.get(problem.severity, ("cyan", "i"))
        line = Text(f"{mark} store: ", style=style)
        line.append(problem.message, style="")
        line.append(f"  [{problem.id}]", style="dim")
        out.print(line)
        out.print(Text(f"    fix: {problem.fix}"))
