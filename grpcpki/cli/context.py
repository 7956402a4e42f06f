"""The object every command receives (``@click.pass_obj``): where the PKI is and how to unlock it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from grpcpki.engine.errors import PassphraseError

if TYPE_CHECKING:
    from grpcpki.engine.pki import Pki

PASSPHRASE_ENV = "GRPCPKI_PASSPHRASE"
PKI_DIR_META = "grpcpki.pki_dir"


@dataclass
class App:
    pki_dir: str
    passphrase_file: str | None = None
    _cached_passphrase: bytes | None = field(default=None, repr=False)

    @property
    def pki_path(self) -> Path:
        return Path(self.pki_dir)

    def passphrase(self, *, confirm: bool = False, purpose: str = "CA key passphrase") -> bytes:
        """The CA key passphrase: --passphrase-file, then $GRPCPKI_PASSPHRASE, then a prompt.

        Never an argv value: argv is visible to every user on the machine (ps, /proc).
        """
        if self._cached_passphrase is not None:
            return self._cached_passphrase
        value: bytes | None = None
        if self.passphrase_file:
            try:
                raw = Path(self.passphrase_file).read_bytes()
            except OSError as exc:
                raise PassphraseError(
                    f"cannot read passphrase file {self.passphrase_file}: {exc.strerror}",
                    "check the path given to --passphrase-file",
                ) from None
            # Files written with `echo` end in a newline that is not part of the secret.
            value = raw.rstrip(b"\r\n")
        elif os.environ.get(PASSPHRASE_ENV):
            value = os.environ[PASSPHRASE_ENV].encode()
        elif sys.stdin is not None and sys.stdin.isatty():
            value = click.prompt(purpose, hide_input=True, confirmation_prompt=confirm, err=True).encode()
        else:
            raise PassphraseError(
                "the CA key is encrypted and no passphrase was given",
                f"set {PASSPHRASE_ENV} or pass --passphrase-file FILE",
            )
        if not value:
            raise PassphraseError("the passphrase is empty", "use a non-empty passphrase")
        self._cached_passphrase = value
        return value

    def pki(self) -> Pki:
        """Open the PKI directory; the passphrase is asked for only if a signing key is needed."""
        from grpcpki.engine.pki import Pki

        return Pki.open(self.pki_path, passphrase=self.passphrase)


pass_app = click.make_pass_decorator(App)


def _set_pki(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        # Shell completion parses without running the group, so there is no App yet: keep the
        # value where the completer (cli/completion_cmd.py) looks for it.
        ctx.meta[PKI_DIR_META] = value
        app = ctx.find_object(App)
        if app is not None:
            app.pki_dir = value


def _set_passphrase_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(App).passphrase_file = value  # type: ignore[union-attr]


def pki_options(func: Any) -> Any:
    """Accept --pki and --passphrase-file after the command name too (`grpcpki issue ... --pki DIR`)."""
    func = click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_passphrase_file,
        help="File holding the CA key passphrase (else $GRPCPKI_PASSPHRASE, else a prompt).",
    )(func)
    func = click.option(
        "--pki",
        type=click.Path(file_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_pki,
        help="PKI directory [default: ./pki or $GRPCPKI_HOME].",
    )(func)
    return func
