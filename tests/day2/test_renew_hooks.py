"""renew --exec runs after each renewed certificate; --quiet for cron; errors on stderr, exit 1, with --json too."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from support import Result, assert_clean_error

_VARS = ("GRPCPKI_NAME", "GRPCPKI_KIND", "GRPCPKI_SERIAL", "GRPCPKI_OLD_SERIAL", "GRPCPKI_NOT_AFTER",
         "GRPCPKI_CERT_PATH", "GRPCPKI_CHAIN_PATH", "GRPCPKI_KEY_PATH", "GRPCPKI_CA_PATH", "GRPCPKI_HOME")


def _setup(cli: Callable[..., Result], *init: str, env: dict[str, str] | None = None) -> None:
    assert cli("init-ca", *init, env=env).code == 0
    assert cli("issue", "server", "localhost", env=env).code == 0
    assert cli("issue", "client", "web", "--spiffe-id", "spiffe://example.org/web", env=env).code == 0


def test_exec_runs_per_renewed_certificate_with_its_facts(cli: Callable[..., Result], tmp_path: Path) -> None:
    env = {"GRPCPKI_PASSPHRASE": "ca secret"}
    _setup(cli, "--encrypt", env=env)
    log = tmp_path / "hooks.log"
    # Each hook logs its variables, and uses grpcpki itself (GRPCPKI_HOME points it at this PKI,
    # although renew was given --pki) to export what was just renewed.
    command = (
        " ".join(f'printf "%s=%s\\n" {v} "${v}" >> {shlex.quote(str(log))};' for v in _VARS)
        + f' printf "PASSPHRASE=%s\\n" "${{GRPCPKI_PASSPHRASE-withheld}}" >> {shlex.quote(str(log))};'
        + f' {shlex.quote(sys.executable)} -m grpcpki export "$GRPCPKI_NAME" --format pem'
        + f' --out {shlex.quote(str(tmp_path))}/"$GRPCPKI_NAME".pem'
    )
    result = cli("renew", "--all", "--force", "--json", "--exec", command, env=env)
    assert result.code == 0, result.output
    document = json.loads(result.stdout)  # hook output went to stderr: stdout is one JSON document
    assert document["renewed"] == 2 and document["hooks_failed"] == 0
    entries: list[dict[str, str]] = []
    for line in log.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "GRPCPKI_NAME":  # each hook's block starts with its name
            entries.append({})
        entries[-1][key] = value
    by_name = {e["GRPCPKI_NAME"]: e for e in entries}
    assert set(by_name) == {"localhost", "web"}
    for cert in document["certificates"]:
        seen = by_name[cert["name"]]
        assert seen["GRPCPKI_SERIAL"] == cert["new_serial"] and seen["GRPCPKI_OLD_SERIAL"] == cert["old_serial"]
        assert seen["GRPCPKI_KIND"] == cert["kind"] and cert["exec"]["exit_code"] == 0
        assert Path(seen["GRPCPKI_CHAIN_PATH"]).read_bytes() in (tmp_path / f"{cert['name']}.pem").read_bytes()
        assert Path(seen["GRPCPKI_HOME"]) == (tmp_path / "pki").resolve()
        assert seen["PASSPHRASE"] == "withheld"  # the CA passphrase is never handed to a hook
        for variable in ("GRPCPKI_CERT_PATH", "GRPCPKI_KEY_PATH", "GRPCPKI_CA_PATH"):
            assert Path(seen[variable]).is_file()
    # Nothing due: the hook does not run, and --quiet prints nothing at all.
    log.unlink()
    quiet = cli("renew", "--all", "--quiet", "--exec", f"touch {shlex.quote(str(log))}")
    assert quiet.code == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.output
    assert not log.exists()
    assert cli("renew", "--all", "--dry-run", "--force", "--exec", f"touch {shlex.quote(str(log))}").code == 0
    assert not log.exists()
    # Without --quiet, the same pass says why nothing happened; --quiet --json still gives the document.
    assert "nothing to renew" in cli("renew", "--all").stderr
    assert json.loads(cli("renew", "--all", "--quiet", "--json").stdout)["renewed"] == 0


def test_failing_hook_keeps_the_renewal_and_exits_1(cli: Callable[..., Result], tmp_path: Path) -> None:
    _setup(cli)
    before = json.loads(cli("list", "--json").stdout)
    result = cli("renew", "localhost", "--force", "--json", "--exec", "echo from-the-hook; exit 3")
    assert result.code == 1, result.output
    document = json.loads(result.stdout)
    assert document["renewed"] == 1 and document["hooks_failed"] == 1
    assert document["certificates"][0]["exec"] == {"command": "echo from-the-hook; exit 3", "exit_code": 3, "timed_out": False}
    assert "from-the-hook" in result.stderr
    assert "error: --exec for localhost exited with 3; the renewed certificate is in place" in result.stderr
    after = {r["name"]: r["serial"] for r in json.loads(cli("list", "--json").stdout)}
    old = {r["name"]: r["serial"] for r in before}
    assert after["localhost"] == document["certificates"][0]["new_serial"] != old["localhost"]
    missing = cli("renew", "web", "--force", "--exec", "no-such-command-anywhere")
    assert missing.code == 1 and "exited with 127 (command not found)" in missing.stderr
    # A hook that hangs is stopped: its whole process group, even children that ignore SIGTERM
    # (an ignored signal stays ignored across exec), and it counts as one failed hook.
    pids = tmp_path / "hook.pids"
    hanging = f"trap '' TERM; sleep 600 & echo $! > {shlex.quote(str(pids))}; echo $$ >> {shlex.quote(str(pids))}; sleep 600"
    stuck = cli("renew", "localhost", "--force", "--json", "--exec", hanging, "--exec-timeout", "1s")
    assert stuck.code == 1, stuck.output
    document = json.loads(stuck.stdout)
    assert document["renewed"] == 1 and document["hooks_failed"] == 1
    assert document["certificates"][0]["exec"]["timed_out"] is True and document["certificates"][0]["exec"]["exit_code"] == 124
    errors = [line for line in stuck.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: --exec for localhost did not finish within 1s and was killed (its whole process group); "
        "the renewed certificate is in place"), stuck.stderr
    for pid in map(int, pids.read_text().split()):
        assert _gone(pid), f"hook process {pid} survived the timeout"
    assert {r["name"]: r["serial"] for r in json.loads(cli("list", "--json").stdout)}["localhost"] == (
        document["certificates"][0]["new_serial"])
    bad = cli("renew", "web", "--force", "--exec", "true", "--exec-timeout", "5")
    assert bad.code == 2 and "--exec-timeout" in bad.stderr and "no unit" in bad.stderr, bad.output


def _gone(pid: int) -> bool:
    """Dead, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def test_errors_go_to_stderr_with_and_without_json(cli: Callable[..., Result], tmp_path: Path) -> None:
    _setup(cli)
    for extra in ((), ("--json",)):
        result = cli("renew", "nope", *extra)
        assert_clean_error(result, "no active certificate named 'nope'")
        assert result.stdout == ""
    # A certificate that cannot be renewed (--keep-key, key gone) fails the pass; JSON says so on
    # stdout and the error is on stderr too.
    (tmp_path / "pki/certs/web/key.pem").unlink()
    result = cli("renew", "web", "--force", "--keep-key", "--json")
    assert result.code == 1
    assert json.loads(result.stdout)["failed"] == 1
    assert "error: could not renew web" in result.stderr
    usage = cli("renew", "--all", "--exec", "  ")
    assert usage.code == 2 and "--exec" in usage.stderr
