"""grpcpki completion: the scripts, and certificate names completed from the inventory."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Result, run_grpcpki


def _complete(words: str, cwd: Path, *, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion would offer for the last word of WORDS (click's bash_complete protocol)."""
    parts = words.split(" ")
    result = run_grpcpki(
        cwd=cwd,
        env={"_GRPCPKI_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), **(env or {})},
    )
    assert result.code == 0 and "Traceback" not in result.output, result.output
    return [line.partition(",")[2] for line in result.stdout.splitlines() if line.startswith("plain,")]


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")])
def test_scripts(shell: str, marker: str, tmp_path: Path) -> None:
    result = run_grpcpki("completion", shell, cwd=tmp_path)
    assert result.code == 0, result.output
    assert "_GRPCPKI_COMPLETE" in result.stdout and marker in result.stdout
    if shell == "bash" and shutil.which("bash"):
        assert subprocess.run(["bash", "-n"], input=result.stdout, text=True).returncode == 0
    assert run_grpcpki("completion", "tcsh", cwd=tmp_path).code == 2


def test_names_complete_per_command(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("init-ca").code == 0
    for args in (("server", "api.internal"), ("server", "localhost"), ("client", "web", "--spiffe-id", "spiffe://e.org/web")):
        assert cli("issue", *args).code == 0
    pki = str(tmp_path / "pki")
    assert _complete(f"grpcpki --pki {pki} export ", tmp_path) == ["api.internal", "localhost", "web"]
    assert _complete(f"grpcpki --pki {pki} renew l", tmp_path) == ["localhost"]
    assert _complete(f"grpcpki --pki {pki} serve --name ", tmp_path) == ["api.internal", "localhost"]
    assert _complete(f"grpcpki --pki {pki} greet --name ", tmp_path) == ["web"]
    # --pki after the command name and GRPCPKI_HOME are honoured too.
    assert _complete(f"grpcpki inspect --pki {pki} a", tmp_path) == ["api.internal"]
    assert _complete("grpcpki doctor w", tmp_path, env={"GRPCPKI_HOME": pki}) == ["web"]
    # A NAME that is both a server and a client is offered in the form the commands accept.
    assert cli("issue", "client", "localhost").code == 0
    assert _complete(f"grpcpki --pki {pki} export ", tmp_path) == ["api.internal", "server/localhost", "client/localhost", "web"]
    assert _complete(f"grpcpki --pki {pki} export client/", tmp_path) == ["client/localhost"]
    assert _complete(f"grpcpki --pki {pki} greet --name l", tmp_path) == ["localhost"]
    assert cli("revoke", "client/localhost").code == 0
    # Revoked certificates are not offered.
    assert cli("revoke", "web").code == 0
    assert _complete(f"grpcpki --pki {pki} export ", tmp_path) == ["api.internal", "localhost"]


def test_no_pki_or_a_damaged_inventory_offers_nothing(tmp_path: Path) -> None:
    assert _complete("grpcpki export ", tmp_path) == []
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "inventory.db").write_text("not a database")
    assert _complete(f"grpcpki --pki {broken} export ", tmp_path) == []
    assert not (tmp_path / "pki").exists()
