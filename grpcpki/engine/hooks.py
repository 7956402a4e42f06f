"""Commands run after a renewal (``grpcpki renew --exec CMD``): reload a server, push a Secret.

The command runs through ``/bin/sh -c`` so that pipes and quoting work as typed
(``--exec 'grpcpki export "$GRPCPKI_NAME" --format k8s | kubectl apply -f -'``); what was
renewed arrives in environment variables (:data:`HOOK_VARIABLES`), never spliced into the
command text, so a certificate name cannot inject shell syntax.

The renewal is already committed when the hook runs: a failing hook is reported and makes
``renew`` exit non-zero, but the new certificate stays (undoing it would hand servers that
already reloaded a certificate that no longer exists in the inventory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


@dataclass(frozen=True)
class HookResult:
    name: str
    command: str
    exit_code: int  # 127: the shell could not find the command; negative: killed by that signal

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, object]:
        return {"command": self.command, "exit_code": self.exit_code}


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
    output: IO[str] | None = None,
) -> HookResult:
    """Run ``command`` for the renewed ``record``; its stdout and stderr go to ``output``
    (default: our stderr, so `renew --json` stdout stays one JSON document)."""
    env = hook_environment(record, old_serial=old_serial, trust_path=trust_path, pki_path=pki_path)
    return HookResult(record.name, command, _run(command, env, output))


def run_command(command: str, variables: dict[str, str], output: IO[str] | None = None) -> int:
    """Run ``command`` like :func:`run_hook`, with ``variables`` (from :data:`HOOK_VARIABLES`) added
    to our environment minus secrets: for renewals made elsewhere (``renew --daemon`` against the
    CA service, which has no inventory row here). Returns the exit code."""
    env = {k: v for k, v in os.environ.items() if k not in _WITHHELD} | variables
    return _run(command, env, output)


def _run(command: str, env: dict[str, str], output: IO[str] | None) -> int:
    stream = output if output is not None else sys.stderr
    stream.flush()
    try:
        completed = subprocess.run(
            [SHELL, "-c", command], env=env, stdin=subprocess.DEVNULL, stdout=stream, stderr=stream, check=False
        )
        return completed.returncode
    except OSError:
        return 127


__all__ = ["HOOK_VARIABLES", "HookResult", "hook_environment", "run_command", "run_hook"]
