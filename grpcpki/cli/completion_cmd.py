"""``grpcpki completion bash|zsh|fish``: the shell completion script, and certificate-name completion."""

from __future__ import annotations

import os
from collections.abc import Callable

import click
from click.shell_completion import CompletionItem

from grpcpki.cli.context import PKI_DIR_META

SHELLS = ("bash", "zsh", "fish")
# click's convention: _{PROG}_COMPLETE selects the shell and asks for completions.
COMPLETE_VAR = "_GRPCPKI_COMPLETE"


def _pki_dir(ctx: click.Context) -> str:
    """--pki after the command, --pki before it, $GRPCPKI_HOME, ./pki: the order the commands use."""
    if ctx.meta.get(PKI_DIR_META):
        return str(ctx.meta[PKI_DIR_META])
    root = ctx.find_root().params.get("pki_dir")
    return str(root or os.environ.get("GRPCPKI_HOME") or "pki")


def complete_names(
    kind: str | None = None, *, files: bool = False
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """A ``shell_complete`` for certificate NAMEs (of ``kind``); ``files`` also offers paths
    (for NAME|FILE arguments). Never raises: no PKI simply means no names."""

    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        from grpcpki.engine.completion import certificate_names

        try:
            names = certificate_names(_pki_dir(ctx), kind=kind, prefix=incomplete)
        except Exception:  # noqa: BLE001 - a completion must never print a traceback into the prompt
            names = []
        items = [CompletionItem(name) for name in names]
        if files and ("/" in incomplete or incomplete.startswith(".") or not items):
            items.append(CompletionItem(incomplete, type="file"))
        return items

    return complete


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, and certificate names.

    Names come from the inventory of the PKI the command line points at (--pki, GRPCPKI_HOME,
    ./pki), or from the shared database of --db / GRPCPKI_DB (read-only, short timeouts);
    `serve --name` offers server certificates, `greet --name` client ones.

    \b
    Examples (install, then open a new shell):
      bash:  grpcpki completion bash > ~/.local/share/bash-completion/completions/grpcpki
      zsh:   grpcpki completion zsh > "${fpath[1]}/_grpcpki"
      fish:  grpcpki completion fish > ~/.config/fish/completions/grpcpki.fish
    Or for the current shell only:
      eval "$(grpcpki completion bash)"
    """
    from click.shell_completion import get_completion_class

    from grpcpki.cli import cli

    shell_class = get_completion_class(shell)
    assert shell_class is not None  # click registers bash, zsh and fish itself
    click.echo(shell_class(cli, {}, "grpcpki", COMPLETE_VAR).source())
