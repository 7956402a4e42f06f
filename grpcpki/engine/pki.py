"""The PKI directory: a CA, the certificates it issued, and the inventory that lists them.

Layout (documented for users in docs/layout.md)::

    pki/
      ca.crt                 trust bundle: the CA certificate(s) every server and client trusts
      inventory.db           SQLite inventory of everything issued
      crl.pem                certificate revocation list (after `grpcpki revoke`)
      ca/g1/root.crt         root CA certificate, generation 1
      ca/g1/root.key         root CA key (0600; encrypted with --encrypt)
      ca/g1/intermediate.crt issuing CA (only with --intermediate)
      ca/g1/intermediate.key
      ca/g2/...              the next CA generation, after `grpcpki ca rotate begin`
      ca/g2/cross.crt        new root certified by the old one (rotation with --cross-sign)
      certs/NAME/cert.pem    leaf certificate
      certs/NAME/chain.pem   leaf + intermediates: what a server or client presents
      certs/NAME/key.pem     leaf private key (0600)
      archive/NAME/SERIAL/   superseded and revoked certificates (and their keys)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from grpcpki.engine import profiles
from grpcpki.engine.certs import CA, CertInfo, Leaf, cert_file_info, cert_info, cert_infos, leaf_sans, load_certificates
from grpcpki.engine.errors import (
    AlreadyExistsError,
    CAExistsError,
    GrpcpkiError,
    InvalidNameError,
    NoCAError,
    NotFoundError,
)
from grpcpki.engine.inventory import Inventory, NewRecord, Record
from grpcpki.engine.keys import KeyType, describe_key, is_encrypted_pem, load_private_key, public_key_bytes
from grpcpki.engine.names import NameConstraints, San
from grpcpki.engine.profiles import Role
from grpcpki.engine.storage import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_dir,
    read_file,
    transaction,
)
from grpcpki.engine.verify import ChainCheck, verify_chain

PassphraseSource = bytes | Callable[[], bytes] | None

TRUST_BUNDLE = "ca.crt"
INVENTORY = "inventory.db"
CRL = "crl.pem"
_SAFE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@")


@dataclass(frozen=True)
class Material:
    """Everything a gRPC server or client loads: its chain and key, and the bundle it trusts."""

    name: str
    role: Role
    cert_path: Path
    chain_path: Path
    key_path: Path
    trust_path: Path
    info: CertInfo


@dataclass(frozen=True)
class KeyFacts:
    """Public facts about a private key file (never the key itself)."""

    key_type: str
    encrypted: bool
    public_key_sha256: str | None


@dataclass(frozen=True)
class Inspection:
    """What ``grpcpki inspect`` shows."""

    source: str
    kind: str  # "certificate" | "private-key"
    info: CertInfo | None = None
    chain_length: int = 0
    key: KeyFacts | None = None
    record: Record | None = None
    verification: ChainCheck | None = None


def validate_cert_name(name: str) -> str:
    """Names become directory names under certs/: refuse anything that could escape it."""
    if not name or name in (".", "..") or not set(name) <= _SAFE_NAME_CHARS or len(name) > 64:
        raise InvalidNameError(
            f"invalid certificate name {name!r}",
            "use 1-64 letters, digits, '.', '-', '_' or '@' (put other identities in --uri/--dns)",
        )
    return name


class Pki:
    """A PKI directory on disk. Open with :meth:`open`, create with :meth:`init`."""

    def __init__(self, path: Path, inventory: Inventory, passphrase: PassphraseSource = None) -> None:
        self.path = path
        self.inventory = inventory
        self._passphrase = passphrase
        # (generation, CA): a CA rotation moves the generation, which invalidates the cache.
        self._signing_ca: tuple[int, CA] | None = None

    # -- opening ------------------------------------------------------------------------
    @staticmethod
    def exists(path: Path | str) -> bool:
        return (Path(path) / INVENTORY).is_file() and (Path(path) / TRUST_BUNDLE).is_file()

    @classmethod
    def open(cls, path: Path | str, passphrase: PassphraseSource = None) -> Pki:
        path = Path(path)
        if not cls.exists(path):
            raise NoCAError(
                f"no CA in {path.resolve()}",
                "create one with `grpcpki init-ca`, or point --pki / GRPCPKI_HOME at your PKI directory",
            )
        return cls(path, Inventory(path / INVENTORY, path), passphrase)

    @classmethod
    def init(
        cls,
        path: Path | str,
        *,
        name: str = "grpcpki CA",
        org: str | None = None,
        key_type: KeyType = KeyType.ECDSA_P256,
        days: int = profiles.DEFAULT_CA_DAYS,
        path_len: int | None = None,
        constraints: NameConstraints | None = None,
        intermediate: bool = False,
        passphrase: bytes | None = None,
        force: bool = False,
        now: datetime | None = None,
    ) -> Pki:
        """Create a CA (root, and an issuing intermediate if asked) in a new PKI directory."""
        path = Path(path)
        if cls.exists(path) and not force:
            raise CAExistsError(
                f"a CA already exists in {path.resolve()}",
                "use it, pick another --pki directory, or pass --force to replace it (every issued certificate stops working)",
            )
        if intermediate and path_len == 0:
            raise GrpcpkiError(
                "--path-len 0 forbids the intermediate that --intermediate creates", "use --path-len 1 or leave it out"
            )
        if path_len is None and intermediate:
            # Room for the issuing intermediate and, during a CA rotation with --cross-sign, the
            # cross certificate above it: leaf -> intermediate -> cross -> old root (RFC 5280
            # 4.2.1.9 counts both). With 1, a cross-signed rotation could never be done later.
            path_len = 2
        root = CA.create(
            name, org=org, key_type=key_type, days=days, path_len=path_len, constraints=constraints, now=now
        )
        issuing = None
        if intermediate:
            issuing = root.create_intermediate(
                f"{name} Issuing CA", org=org, key_type=key_type,
                days=min(profiles.DEFAULT_INTERMEDIATE_DAYS, days), now=now,
            )
        backup: Path | None = None
        if force and path.exists():
            # Move the old PKI aside rather than deleting it: a --force by mistake is recoverable.
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            backup = path.with_name(f"{path.name}.replaced-{stamp}")
            os.replace(path, backup)
        ensure_dir(path)
        generation = 1
        ca_dir = Path("ca") / f"g{generation}"
        ensure_dir(path / ca_dir)  # 0700: it holds the CA keys
        try:
            with transaction() as tx:
                tx.write(path / ca_dir / "root.crt", root.cert_pem, PUBLIC_FILE_MODE)
                tx.write(path / ca_dir / "root.key", root.private_key_pem(passphrase), PRIVATE_FILE_MODE)
                if issuing is not None:
                    tx.write(path / ca_dir / "intermediate.crt", issuing.cert_pem, PUBLIC_FILE_MODE)
                    tx.write(path / ca_dir / "intermediate.key", issuing.private_key_pem(passphrase), PRIVATE_FILE_MODE)
                tx.write(path / TRUST_BUNDLE, root.cert_pem, PUBLIC_FILE_MODE)
            inventory = Inventory(path / INVENTORY, path)
            with inventory.transaction():
                inventory.add(_ca_record(root, "root", name, generation, path / ca_dir / "root.crt", path / ca_dir / "root.key"))
                if issuing is not None:
                    inventory.add(
                        _ca_record(issuing, "intermediate", f"{name} Issuing CA", generation,
                                   path / ca_dir / "intermediate.crt", path / ca_dir / "intermediate.key")
                    )
                inventory.set_meta("ca_generation", str(generation))
                inventory.set_meta("intermediate", "1" if intermediate else "0")
        except BaseException:
            # Nothing half-made survives: a PKI without its inventory (or the reverse) is worse
            # than none. A PKI that --force moved aside comes back.
            shutil.rmtree(path, ignore_errors=True)
            if backup is not None:
                os.replace(backup, path)
            raise
        return cls(path, inventory, passphrase)

    # -- CA -----------------------------------------------------------------------------
    @property
    def trust_bundle_path(self) -> Path:
        return self.path / TRUST_BUNDLE

    def trust_anchors(self) -> list[CertInfo]:
        """The CA certificates in ca.crt (two during a CA rotation's overlap)."""
        return cert_infos(read_file(self.trust_bundle_path, "trust bundle"), source="trust bundle")

    @property
    def generation(self) -> int:
        return int(self.inventory.get_meta("ca_generation", "1") or 1)

    @property
    def uses_intermediate(self) -> bool:
        return self.inventory.get_meta("intermediate", "0") == "1"

    def ca_dir(self, generation: int | None = None) -> Path:
        return self.path / "ca" / f"g{generation or self.generation}"

    def passphrase_value(self) -> bytes | None:
        source = self._passphrase
        return source() if callable(source) else source

    def load_ca(self, generation: int | None = None, *, issuing: bool = True) -> CA:
        """The CA of a generation: the intermediate if there is one (and ``issuing``), else the root."""
        ca_dir = self.ca_dir(generation)
        root_cert_path, root_key_path = ca_dir / "root.crt", ca_dir / "root.key"
        inter_cert_path, inter_key_path = ca_dir / "intermediate.crt", ca_dir / "intermediate.key"
        use_intermediate = issuing and inter_cert_path.exists()
        cert_path, key_path = (inter_cert_path, inter_key_path) if use_intermediate else (root_cert_path, root_key_path)
        cert_pem = read_file(cert_path, "CA certificate")
        key_pem = read_file(key_path, "CA key")
        passphrase = self.passphrase_value() if is_encrypted_pem(key_pem) else None
        parents = read_file(root_cert_path, "root CA certificate") if use_intermediate else b""
        return CA.load(cert_pem, key_pem, passphrase=passphrase, parents_pem=parents)

    def signing_ca(self) -> CA:
        """The CA that signs new leaves: the current generation's intermediate, or its root."""
        generation = self.generation
        if self._signing_ca is None or self._signing_ca[0] != generation:
            self._signing_ca = (generation, self.load_ca(generation))
        return self._signing_ca[1]

    def ca_records(self) -> list[Record]:
        return self.inventory.query(kinds=("root", "intermediate", "cross"), statuses=None)

    # -- leaves -------------------------------------------------------------------------
    def leaf_dir(self, name: str) -> Path:
        return self.path / "certs" / name

    def issue(
        self,
        role: Role,
        name: str,
        *,
        sans: Iterable[str | San] = (),
        days: int = profiles.DEFAULT_LEAF_DAYS,
        key_type: KeyType = KeyType.ECDSA_P256,
        also_client: bool = False,
        also_server: bool = False,
        name_as_san: bool = True,
        replace: bool = False,
        now: datetime | None = None,
    ) -> Record:
        """Issue and store a leaf.

        If NAME is already active this raises AlreadyExistsError, unless ``replace``: then the new
        certificate (with the names given now) supersedes it and the old one is archived.
        """
        existing = self.check_can_issue(name, sans=sans, name_as_san=name_as_san, replace=replace)
        leaf = self.signing_ca().issue(
            role, name, sans=sans, days=days, key_type=key_type, also_client=also_client,
            also_server=also_server, name_as_san=name_as_san, now=now,
        )
        return self.store_leaf(leaf, replaces=existing)

    def check_can_issue(
        self, name: str, *, sans: Iterable[str | San] = (), name_as_san: bool = True, replace: bool = False
    ) -> Record | None:
        """Raise unless NAME may be issued with these SANs (valid names, at least one SAN, NAME free
        unless ``replace``); return the record it replaces.

        Cheap and key-free, so a caller can run it before unlocking an encrypted CA key.
        """
        validate_cert_name(name)
        leaf_sans(name, sans, name_as_san=name_as_san)
        existing = self.inventory.active_leaf(name)
        if existing is not None and not replace:
            raise AlreadyExistsError(
                f"{existing.kind} certificate {name!r} already exists (expires {existing.not_after:%Y-%m-%d})",
                f"`grpcpki renew {name}` renews it with the same names; add --replace to reissue it with these",
            )
        return existing

    def store_leaf(self, leaf: Leaf, *, replaces: Record | None = None) -> Record:
        """Write a leaf's files and inventory row together; archive ``replaces`` in the same step."""
        directory = self.leaf_dir(leaf.name)
        ensure_dir(directory)  # 0700: it holds a private key
        cert_path, chain_path, key_path = directory / "cert.pem", directory / "chain.pem", directory / "key.pem"
        chain_pem = leaf.chain_pem + self.cross_chain_pem()
        inventory = self.inventory
        with inventory.transaction():
            if replaces is not None:
                archived = self.archive_files(replaces)
                inventory.set_status(replaces.id, "superseded", paths=archived)
            record = inventory.add(
                NewRecord(
                    serial=leaf.info.serial_hex, kind=leaf.role.value, name=leaf.name, subject=leaf.info.subject,
                    sans=[str(s) for s in leaf.info.sans], issuer=leaf.info.issuer,
                    not_before=leaf.info.not_before, not_after=leaf.info.not_after,
                    fingerprint=leaf.info.fingerprint_sha256, key_type=leaf.info.key_type,
                    eku=leaf.info.extended_key_usage, ca_generation=self.generation,
                    cert_path=cert_path, chain_path=chain_path, key_path=key_path,
                )
            )
            if replaces is not None:
                inventory.set_status(replaces.id, "superseded", superseded_by=record.id)
            # Files last inside the DB transaction: if a write fails the rows roll back, and the
            # staged files are removed by the file transaction, so both sides stay in step.
            with transaction() as tx:
                # Key before certificate: a hot-reloading server that sees the new cert has the new key.
                tx.write(key_path, leaf.key_pem, PRIVATE_FILE_MODE)
                tx.write(cert_path, leaf.cert_pem, PUBLIC_FILE_MODE)
                tx.write(chain_path, chain_pem, PUBLIC_FILE_MODE)
        return record

    def cross_chain_pem(self) -> bytes:
        """The cross certificate of the current CA generation, if a rotation made one.

        Appended to every new chain.pem while it exists (rotation.py), so peers that still
        trust only the old root can build leaf -> [intermediate] -> cross -> old root.
        """
        cross = self.ca_dir() / "cross.crt"
        return read_file(cross, "cross certificate") if cross.is_file() else b""

    def archive_files(self, record: Record) -> tuple[Path | None, Path | None, Path | None]:
        """Copy a record's files to archive/NAME/SERIAL/ and return the new paths."""
        target = self.path / "archive" / record.name / record.serial
        ensure_dir(target)
        result: list[Path | None] = []
        for current in (record.cert_path, record.chain_path, record.key_path):
            if current is None or not current.exists():
                result.append(None)
                continue
            destination = target / current.name
            shutil.copy2(current, destination)
            result.append(destination)
        return result[0], result[1], result[2]

    def find(self, name: str) -> Record:
        record = self.inventory.active_leaf(name)
        if record is None:
            known = sorted({r.name for r in self.inventory.query(kinds=("server", "client"))})
            hint = f"known names: {', '.join(known[:10])}" if known else "issue one with `grpcpki issue server|client NAME`"
            raise NotFoundError(f"no active certificate named {name!r} in {self.path}", hint)
        return record

    def material(self, name: str) -> Material:
        record = self.find(name)
        assert record.cert_path and record.chain_path and record.key_path
        for path in (record.chain_path, record.key_path):
            if not path.exists():
                raise NotFoundError(
                    f"{path} is listed in the inventory but missing on disk",
                    f"reissue with `grpcpki renew {name} --force`",
                )
        return Material(
            name=name,
            role=Role(record.kind),
            cert_path=record.cert_path,
            chain_path=record.chain_path,
            key_path=record.key_path,
            trust_path=self.trust_bundle_path,
            info=cert_file_info(record.cert_path),
        )

    def records(
        self, *, kind: str | None = None, expiring_within: timedelta | None = None, include_inactive: bool = False,
        now: datetime | None = None,
    ) -> list[Record]:
        moment = now or datetime.now(UTC)
        return self.inventory.query(
            kinds=(kind,) if kind else ("server", "client"),
            statuses=None if include_inactive else ("active",),
            expiring_before=moment + expiring_within if expiring_within is not None else None,
        )

    # -- inspection -------------------------------------------------------------------------
    def inspect(self, target: str, *, now: datetime | None = None) -> Inspection:
        """Inspect an inventory name or a file (certificate or private key)."""
        path = Path(target)
        record = None
        if not path.is_file():
            if os.sep in target or target.endswith((".pem", ".crt", ".key")):
                raise NotFoundError(f"file {target} does not exist", "check the path")
            record = self.find(target)
            assert record.chain_path is not None
            path = record.chain_path
        inspection = inspect_file(path, trust_pem=read_file(self.trust_bundle_path, "trust bundle"), now=now)
        if record is None:
            record = self.inventory.by_serial(inspection.info.serial_hex) if inspection.info else None
        return Inspection(
            source=str(path), kind=inspection.kind, info=inspection.info, chain_length=inspection.chain_length,
            key=inspection.key, record=record, verification=inspection.verification,
        )


def inspect_file(path: Path, *, trust_pem: bytes | None = None, now: datetime | None = None) -> Inspection:
    """Facts about a PEM file: a certificate (chain) or a private key (public facts only)."""
    data = read_file(path, "file")
    if b"PRIVATE KEY-----" in data and b"BEGIN CERTIFICATE" not in data:
        encrypted = is_encrypted_pem(data)
        if encrypted:
            return Inspection(str(path), "private-key", key=KeyFacts("unknown (encrypted)", True, None))
        key = load_private_key(data, source=str(path))
        digest = hashlib.sha256(public_key_bytes(key)).hexdigest()
        return Inspection(str(path), "private-key", key=KeyFacts(describe_key(key), False, digest))
    certs = load_certificates(data, source=str(path))
    info = cert_info(data)
    verification = None
    if trust_pem is not None:
        role = Role.SERVER if "serverAuth" in info.extended_key_usage else Role.CLIENT
        if info.is_ca:
            verification = _verify_ca(data, trust_pem)
        else:
            verification = verify_chain(data, trust_pem, role, now=now)
    return Inspection(str(path), "certificate", info=info, chain_length=len(certs), verification=verification)


def _verify_ca(cert_pem: bytes, trust_pem: bytes) -> ChainCheck:
    anchors = {info.fingerprint_sha256 for info in cert_infos(trust_pem, source="trust bundle")}
    if cert_info(cert_pem).fingerprint_sha256 in anchors:
        return ChainCheck(True, "this CA is in the trust bundle")
    return ChainCheck(False, "this CA is not in the trust bundle")


def _ca_record(ca: CA, kind: str, name: str, generation: int, cert_path: Path, key_path: Path) -> NewRecord:
    info = ca.info
    return NewRecord(
        serial=info.serial_hex, kind=kind, name=name, subject=info.subject, sans=[], issuer=info.issuer,
        not_before=info.not_before, not_after=info.not_after, fingerprint=info.fingerprint_sha256,
        key_type=info.key_type, ca_generation=generation, cert_path=cert_path, key_path=key_path,
    )


__all__ = ["Inspection", "KeyFacts", "Material", "Pki", "inspect_file", "validate_cert_name"]
