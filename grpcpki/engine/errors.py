"""One error family for the whole engine.

Every error carries a ``hint``: the thing the user should do next. The CLI prints
``message`` and ``hint`` on one line and exits 1; nothing else is shown unless
``GRPCPKI_DEBUG=1``.
"""

from __future__ import annotations


class GrpcpkiError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InvalidNameError(GrpcpkiError, ValueError):
    """A SAN (DNS name, IP address, URI or SPIFFE ID) is malformed."""


class NameConstraintError(GrpcpkiError):
    """A name lies outside the CA's X.509 name constraints."""


class ValidityError(GrpcpkiError):
    """A requested validity period is impossible (e.g. past the issuer's notAfter)."""


class NoCAError(GrpcpkiError):
    """The PKI directory has no CA yet."""


class CAExistsError(GrpcpkiError):
    """A CA already exists where one would be created."""


class NotFoundError(GrpcpkiError):
    """A named certificate, file or inventory record does not exist."""


class AmbiguousNameError(NotFoundError):
    """A NAME is both a server and a client certificate: the caller must say which (``server/NAME``)."""


class AlreadyExistsError(GrpcpkiError):
    """A certificate with that name is already active."""


class PemError(GrpcpkiError):
    """A file is not PEM, or holds the wrong kind of object."""


class PassphraseError(GrpcpkiError):
    """A passphrase is missing or wrong for an encrypted key."""


class KeyMismatchError(GrpcpkiError):
    """A private key does not belong to the certificate it is paired with."""


class CannotSignError(GrpcpkiError):
    """The CA certificate cannot sign (not a CA, no keyCertSign, expired, path length exhausted)."""


class InventoryError(GrpcpkiError):
    """The SQLite inventory is unreadable, from a newer grpcpki, or disagrees with the files."""


class DatabaseUnavailableError(InventoryError):
    """A shared inventory's database server could not be reached (refused, down, timed out):
    nothing was read or written, and the same call may succeed once it is back."""


class RotationError(GrpcpkiError):
    """A CA rotation step cannot run in the current phase."""


class ProbeError(GrpcpkiError):
    """A live probe could not be carried out (bad address, refused connection...)."""


class LockTimeoutError(GrpcpkiError):
    """Another grpcpki process held the PKI's lock for longer than the lock timeout."""


class StoreError(GrpcpkiError):
    """The PKI store (files and inventory) is inconsistent or could not be recovered."""
