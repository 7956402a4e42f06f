"""Certificate, key and trust-bundle files as the Greeter reads them (no grpc import here).

Both ends read files rather than in-memory objects so that a running server (and a
``greet --new-connection`` loop) follow rotation: whoever replaces the files on disk wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grpcpki.engine import CertInfo, cert_info, check_key_pair
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.pem import certificate_blocks
from grpcpki.engine.storage import FileStamp, file_stamp, read_file
from grpcpki.greeter.errors import GreeterError


@dataclass(frozen=True)
class TlsFiles:
    """Where one side's TLS material lives.

    ``chain`` is the certificate file presented to the peer (leaf first, then any
    intermediates); ``ca`` the trust bundle used to verify the peer. Any may be None:
    a TLS-only client has no chain/key, a TLS-only server no ca, a plaintext side nothing.
    """

    chain: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.chain, self.key, self.ca) if p is not None)


@dataclass(frozen=True)
class TlsMaterial:
    """The bytes of a :class:`TlsFiles` at one moment, checked to be usable."""

    chain_pem: bytes | None
    key_pem: bytes | None = field(repr=False)
    ca_pem: bytes | None
    leaf: CertInfo | None
    trusted: tuple[CertInfo, ...]


Stamp = tuple[FileStamp, ...]
"""(inode, size, mtime_ns, ctime_ns) for each file: cheap to take before every handshake."""


def stamp(files: TlsFiles) -> Stamp:
    """A value that changes whenever any of the files is replaced or rewritten.

    Missing files stamp as zeros, so a file that disappears mid-rotation (``rm`` then ``cp``)
    changes the stamp and is retried when it comes back.
    """
    return tuple(file_stamp(path) or (0, 0, 0, 0) for path in files.paths())


def split_pem_certificates(pem: bytes) -> list[bytes]:
    """Each ``CERTIFICATE`` block of a PEM bundle, in order (linear time: engine/pem.py)."""
    return certificate_blocks(pem)


def _read(path: Path, what: str, flag: str) -> bytes:
    # One reader for every input file: regular files only, size-capped (engine/storage.py).
    try:
        return read_file(path, f"{what} file")
    except GrpcpkiError as exc:
        raise GreeterError(exc.message, f"check {flag}") from None


def load(files: TlsFiles, *, side: str = "server") -> TlsMaterial:
    """Read and check the files; raise :class:`GreeterError` (or the engine's PemError /
    KeyMismatchError) with the file named, before grpc ever sees them.

    The pair is checked with the engine's ``check_key_pair`` because grpc reports a mismatch
    as 'Failed to bind to address' on a server and 'Failed to create security handshaker'
    on a client (docs/failures.md#key-mismatch-at-bind).
    """
    chain_pem = key_pem = ca_pem = None
    leaf = None
    if (files.chain is None) != (files.key is None):
        raise GreeterError(
            f"a {side} certificate needs both its certificate and its private key",
            "pass --cert and --key together",
        )
    if files.chain is not None and files.key is not None:
        chain_pem = _read(files.chain, f"{side} certificate", "--cert")
        key_pem = _read(files.key, f"{side} private key", "--key")
        try:
            check_key_pair(chain_pem, key_pem)
            leaf = cert_info(chain_pem)
        except GrpcpkiError as exc:
            raise type(exc)(f"{files.chain} + {files.key}: {exc.message}", exc.hint) from None
    trusted: tuple[CertInfo, ...] = ()
    if files.ca is not None:
        ca_pem = _read(files.ca, "trust bundle (CA)", "--ca")
        blocks = split_pem_certificates(ca_pem)
        if not blocks:
            raise GreeterError(
                f"trust bundle {files.ca} holds no PEM certificate",
                "point --ca at the CA certificate (ca.crt), not a key or a DER file",
            )
        try:
            trusted = tuple(cert_info(block) for block in blocks)
        except GrpcpkiError as exc:
            raise type(exc)(f"{files.ca}: {exc.message}", exc.hint) from None
    return TlsMaterial(chain_pem=chain_pem, key_pem=key_pem, ca_pem=ca_pem, leaf=leaf, trusted=trusted)


def describe_trust(material: TlsMaterial) -> str:
    """'CN=Example CA (SHA256 AB:CD:EF…)' for each anchor, for one status line."""
    return "; ".join(f"{info.subject} (SHA256 {info.fingerprint_sha256[:23]}…)" for info in material.trusted)


__all__ = ["TlsMaterial", "Stamp", "TlsFiles", "describe_trust", "load", "split_pem_certificates", "stamp"]
