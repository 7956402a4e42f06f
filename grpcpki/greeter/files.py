"""Certificate, key and trust-bundle files as the Greeter reads them (no grpc import here).

Both ends read files rather than in-memory objects so that a running server (and a
``greet --new-connection`` loop) follow rotation: whoever replaces the files on disk wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from grpcpki.engine import CertInfo, Role, cert_info, check_key_pair
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.pem import certificate_blocks
from grpcpki.engine.storage import FileStamp, file_stamp, read_file
from grpcpki.engine.verify import verify_chain
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


def serving_problem(
    material: TlsMaterial, *, current: TlsMaterial | None = None, must_chain: bool = False, now: datetime | None = None
) -> str | None:
    """Why ``material`` must not replace what a server presents now, or None if it is fit.

    A reload swaps what every new client is shown, so a file that grpc would accept but clients
    would refuse (a client-only certificate, an expired one, one from another CA) would take the
    service down at its next handshake. The key/certificate pair is already checked by :func:`load`.
    ``current``: what is served now; clients dial its DNS/IP names, so the new certificate must keep
    them. ``must_chain``: the material served so far chained to its trust bundle, so the new one
    must too (a server whose certificate comes from another CA than its clients' is left alone).
    """
    leaf = material.leaf
    if leaf is None or material.chain_pem is None:
        return "there is no certificate"
    if leaf.extended_key_usage and "serverAuth" not in leaf.extended_key_usage:
        usages = ", ".join(leaf.extended_key_usage)
        return f"the new certificate {leaf.subject} is not for servers (extended key usage {usages}, no serverAuth)"
    state = leaf.validity_state(now)
    if state == "expired":
        return f"the new certificate {leaf.subject} expired on {leaf.not_after:%Y-%m-%d %H:%M}Z"
    if state == "not-yet-valid":
        return f"the new certificate {leaf.subject} is not valid before {leaf.not_before:%Y-%m-%d %H:%M}Z"
    if current is not None and current.leaf is not None:
        # gRPC checks the dialed name against DNS/IP SANs only (never the CN when SANs exist).
        dropped = [str(s) for s in current.leaf.sans if s.kind in ("dns", "ip") and s not in leaf.sans]
        if dropped:
            return f"the new certificate {leaf.subject} drops names clients dial: {', '.join(dropped)}"
    if must_chain and material.ca_pem is not None:
        check = verify_chain(material.chain_pem, material.ca_pem, Role.SERVER, now=now)
        if not check.ok:
            return f"the new certificate {leaf.subject} does not verify against the trust bundle: {check.detail}"
    return None


def chains_to_bundle(material: TlsMaterial, now: datetime | None = None) -> bool:
    """Does the server certificate verify against its own trust bundle (the usual one-CA setup)?"""
    if material.chain_pem is None or material.ca_pem is None:
        return False
    return verify_chain(material.chain_pem, material.ca_pem, Role.SERVER, now=now).ok


__all__ = [
    "TlsMaterial", "Stamp", "TlsFiles", "chains_to_bundle", "describe_trust", "load", "serving_problem",
    "split_pem_certificates", "stamp",
]
