"""Fixtures shared by every test directory; helpers live in support.py."""

from __future__ import annotations

import os

# pexpect forks this process to give grpcpki a terminal (tests/cli/test_prompts.py,
# tests/speed/test_list.py). With grpc loaded here (xdist workers run greeter tests too), grpc's
# fork handlers restart its event engine in the child before exec, which can print epoll errors
# into the terminal or kill the child. Set before any test module imports grpc; subprocesses
# inherit it, and grpcpki never forks a process that runs grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from collections.abc import Callable
from pathlib import Path

import pytest

from hypothesis import settings

from support import HYPOTHESIS_CASES, Result, run_grpcpki


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """`cli("issue", "server", "x")` runs grpcpki against tmp_path/pki."""
    pki = tmp_path / "pki"

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return run_grpcpki("--pki", str(pki), *args, cwd=tmp_path, env=env, input=input)

    return run


def pytest_sessionfinish(session: pytest.Session) -> None:
    # On an xdist worker: hand this worker's hypothesis case counts to the controller.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["hypothesis_cases"] = dict(HYPOTHESIS_CASES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    # On the controller (an xdist hook): add up what each worker counted.
    HYPOTHESIS_CASES.update(getattr(node, "workeroutput", {}).get("hypothesis_cases", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not HYPOTHESIS_CASES:
        return
    terminalreporter.section("hypothesis cases")
    for name, cases in sorted(HYPOTHESIS_CASES.items()):
        terminalreporter.write_line(f"{cases:6d}  {name}")
    profile = settings._current_profile  # noqa: SLF001 - the name is only shown to people
    terminalreporter.write_line(f"{sum(HYPOTHESIS_CASES.values()):6d}  in total ({profile} profile)")
