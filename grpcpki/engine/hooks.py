"""Commands run after a renewal (``grpcpki renew --exec CMD``): reload a server, push a Secret.

The command runs through ``/bin/sh -c`` so that pipes and quoting work as typed
(``--exec 'grpcpki export "$GRPCPKI_NAME" --format k8s | kubectl apply -f -'``); what was
renewed arrives in environment variables (:data:`HOOK_VARIABLES`), never spliced into the
command text, so a certificate name cannot inject shell syntax.

The renewal is already committed when the hook runs: a failing hook is reported and makes
``renew`` exit non-zero, but the new certificate stays (undoing it would hand servers that
already reloaded a certificate that no longer exists in the inventory).

A hook has a time limit (``--exec-timeout``, default :data:`DEFAULT_HOOK_TIMEOUT`): one that
hangs (a ``kubectl`` waiting on an unreachable API server, a reload that never returns) would
otherwise hold ``renew --all`` in cron, and ``renew --watch`` / ``--daemon`` for good, while the
PKI lock is free but no other certificate gets its hook. The hook runs in a process group of its
own, so on timeout the whole group is stopped (SIGTERM, then SIGKILL after
:data:`KILL_GRACE`), not only the shell: ``sh -c 'a | b'`` leaves ``a`` and ``b`` running if only
``sh`` is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from grpcpki.engine.durations import format_duration
from grpcpki.engine.inventory import Record

# name -> meaning, documented in docs/commands.md (renew --exec).
HOOK_VARIABLES = {
    "GRPCPKI_NAME": "certificate name",
    "GRPCPKI_KIND": "server or client",
    "GRPCPKI_SERIAL": "serial of the new certificate (lowercase hex)",
    "GRPCPKI_OLD_SERIAL": "serial of the certificate it replaced",
    "GRPCPKI_NOT_AFTER": "expiry of the new certificate (ISO 8601, UTC)",
    "GRPCPKI_CERT_PATH": "cert.pem (the leaf)",
    "GRPCPKI_CHAIN_PATH": "chain.pem (leaf + intermediates: what the peer presents)",
    "GRPCPKI_KEY_PATH": "key.pem (empty for a certificate signed from a CSR)",
    "GRPCPKI_CA_PATH": "ca.crt (the trust bundle)",
    "GRPCPKI_HOME": "the PKI directory, so `grpcpki` inside the hook uses the same PKI",
}
# Never handed to a hook: it is the CA key's passphrase, and the hook needs no CA key.
_WITHHELD = ("GRPCPKI_PASSPHRASE",)
SHELL = "/bin/sh"
DEFAULT_HOOK_TIMEOUT = timedelta(minutes=5)
# Between SIGTERM and SIGKILL: time for a hook to clean up (remove a temp file, release a lock).
KILL_GRACE = timedelta(seconds=2)
# The exit status of a hook that ran out of time, as coreutils' timeout(1) reports it.
TIMED_OUT = 124


@dataclass(frozen=True)
class HookResult:
    name: str
    command: str
    exit_code: int  # 127: the shell could not find the command; negative: killed by that signal
    timed_out: timedelta | None = None  # the limit it ran into (exit_code is then TIMED_OUT)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def outcome(self) -> str:
        """How it ended, in words: ``exited with 3``, ``did not finish within 5m ...``."""
        if self.timed_out is not None:
            return f"did not finish within {format_duration(self.timed_out)} and was killed (its whole process group)"
        if self.exit_code < 0:
            return f"was killed by signal {-self.exit_code}"
        if self.exit_code == 127:
            return "exited with 127 (command not found)"
        return f"exited with {self.exit_code}"

    def to_dict(self) -> dict[str, object]:
        return {"command": self.command, "exit_code": self.exit_code, "timed_out": self.timed_out is not None}


def hook_environment(record: Record, *, old_serial: str, trust_path: Path, pki_path: Path) -> dict[str, str]:
    """The environment the hook runs in: ours, minus secrets, plus what was renewed."""
    env = {k: v for k, v in os.environ.items() if k not in _WITHHELD}
    env.update({
        "GRPCPKI_NAME": record.name,
        "GRPCPKI_KIND": record.kind,
        "GRPCPKI_SERIAL": record.serial,
        "GRPCPKI_OLD_SERIAL": old_serial,
        "GRPCPKI_NOT_AFTER": record.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "GRPCPKI_CERT_PATH": str(record.cert_path.resolve()) if record.cert_path else "",
        "GRPCPKI_CHAIN_PATH": str(record.chain_path.resolve()) if record.chain_path else "",
        "GRPCPKI_KEY_PATH": str(record.key_path.resolve()) if record.key_path else "",
        "GRPCPKI_CA_PATH": str(trust_path.resolve()),
        "GRPCPKI_HOME": str(pki_path.resolve()),
    })
    return env


def run_hook(
    command: str, record: Record, *, old_serial: str, trust_path: Path, pki_path: Path,
    output: IO[str] | None = None, timeout: timedelta = DEFAULT_HOOK_TIMEOUT,
) -> HookResult:
    """Run ``command`` for the renewed ``record``; its stdout and stderr go to ``output``
    (default: our stderr, so `renew --json` stdout stays one JSON document)."""
    env = hook_environment(record, old_serial=old_serial, trust_path=trust_path, pki_path=pki_path)
    return _run(record.name, command, env, output, timeout)


def run_command(
    command: str, variables: dict[str, str], output: IO[str] | None = None, *,
    timeout: timedelta = DEFAULT_HOOK_TIMEOUT,
) -> HookResult:
    """Run ``command`` like :func:`run_hook`, with ``variables`` (from :data:`HOOK_VARIABLES`) added
    to our environment minus secrets: for renewals made elsewhere (``renew --daemon`` against the
    CA service, which has no inventory row here)."""
    env = {k: v for k, v in os.environ.items() if k not in _WITHHELD} | variables
    return _run(variables.get("GRPCPKI_NAME", ""), command, env, output, timeout)


def _run(name: str, command: str, env: dict[str, str], output: IO[str] | None, timeout: timedelta) -> HookResult:
    stream = output if output is not None else sys.stderr
    stream.flush()
    try:
        # start_new_session: the hook leads a process group of its own (its pgid is its pid), so
        # a timeout can stop everything it started, and a Ctrl-C meant for it still reaches it
        # through our handler rather than the terminal's (renew reports, then exits).
        process = subprocess.Popen(
            [SHELL, "-c", command], env=env, stdin=subprocess.DEVNULL, stdout=stream, stderr=stream,
            start_new_session=True,
        )
    except OSError:
        return HookResult(name, command, 127)
    try:
        return HookResult(name, command, process.wait(timeout=timeout.total_seconds()))
    except subprocess.TimeoutExpired:
        _stop_group(process)
        return HookResult(name, command, TIMED_OUT, timed_out=timeout)
    except BaseException:
        _stop_group(process)  # Ctrl-C or SIGTERM while waiting: leave no hook behind
        raise


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hook's process group, SIGKILL to what is left after KILL_GRACE."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE.total_seconds())
    # Also when the shell already exited: its children may have ignored SIGTERM. The group id
    # stays reserved while any member lives, so this cannot reach an unrelated process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


__all__ = [
    "DEFAULT_HOOK_TIMEOUT", "HOOK_VARIABLES", "TIMED_OUT", "HookResult", "hook_environment", "run_command", "run_hook",
]
