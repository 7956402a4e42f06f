"""Revocation: mark a leaf revoked in the inventory and publish ``pki/crl.pem``.

The newest CRL also goes into the inventory (table ``crls``), in the transaction that signs it:
on a shared PostgreSQL inventory the directory that signed is one of many, so the database's
copy is the one that is never stale. The CA service's GetCRL serves it (:class:`CrlCache`, no
CA key needed), and a command that finds its local crl.pem older rewrites the file from it
(:func:`sync_crl_file`), because ``serve`` and peers read the file.

``crl.pem`` holds one CRL per issuing CA that peers may still meet (the current CA generation,
plus an older one during a CA rotation), concatenated. OpenSSL's ``-CRLfile`` and most loaders
read every CRL in a PEM file and pick the one whose issuer (and AKI) matches the certificate.

grpcio (Python) cannot load a CRL into the TLS handshake, so a Python server checks the peer's
serial against :func:`revoked_serials` per call instead; it is cheap to call repeatedly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from grpcpki.engine import profiles
from grpcpki.engine.certs import CA, authority_key_identifier, cert_info, load_certificates
from grpcpki.engine.errors import GrpcpkiError, NotFoundError, PemError
from grpcpki.engine.inventory import Inventory, Record
from grpcpki.engine.lock import StoreLock
from grpcpki.engine.pem import split_pem
from grpcpki.engine.pki import CRL, Pki
from grpcpki.engine.schema import crls
from grpcpki.engine.storage import PUBLIC_FILE_MODE, atomic_write, file_stamp, read_file

# RFC 5280 5.3.1 reason codes grpcpki offers (the ones that make sense for a leaf).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}
# Peers that check CRLs reject a chain once nextUpdate has passed ("CRL has expired" in
# OpenSSL), so the CRL is re-signed by `grpcpki renew` (run from cron) once a third of this
# window is left, and by every `revoke` and `ca rotate` step.
CRL_VALIDITY = timedelta(days=30)
CRL_NUMBER_META = "crl_number"
_LEAF_KINDS = ("server", "client")


@dataclass(frozen=True)
class CrlEntry:
    """One CRL inside crl.pem: who signed it and how many serials it lists."""

    issuer: str
    generation: int
    revoked: int


@dataclass(frozen=True)
class CrlSummary:
    path: Path
    number: int
    this_update: datetime
    next_update: datetime
    crls: tuple[CrlEntry, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "crl_number": self.number,
            "this_update": self.this_update,
            "next_update": self.next_update,
            "crls": [{"issuer": c.issuer, "ca_generation": c.generation, "revoked": c.revoked} for c in self.crls],
        }


@dataclass(frozen=True)
class RevokeResult:
    record: Record
    already_revoked: bool
    crl: CrlSummary

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.record.name,
            "kind": self.record.kind,
            "serial": self.record.serial,
            "action": "already-revoked" if self.already_revoked else "revoked",
            "reason": self.record.revocation_reason,
            "revoked_at": self.record.revoked_at,
            "crl": self.crl.to_dict(),
        }


# -- revoking -------------------------------------------------------------------------------
def revoke(pki: Pki, target: str, *, reason: str = "unspecified", now: datetime | None = None) -> RevokeResult:
    """Revoke the active leaf named ``target`` (or the certificate with that serial) and rewrite crl.pem.

    Re-running on a revoked certificate rewrites the CRL and reports ``already_revoked``. The
    row, the archived files and the CRL change in one store transaction (journal.py).
    """
    if reason not in REASONS:
        raise GrpcpkiError(f"unknown revocation reason {reason!r}", f"use one of: {', '.join(REASONS)}")
    # Found under the lock: a renew that ran just before is seen, and its new certificate is the
    # one revoked; a renew that runs just after finds nothing active to renew.
    with pki.transaction() as tx:
        record = find_revocation_target(pki, target)
        if record.kind not in _LEAF_KINDS:
            raise GrpcpkiError(
                f"{record.name!r} (serial {record.serial}) is a {record.kind} CA certificate; grpcpki revokes leaves only",
                "to retire a CA, rotate it with `grpcpki ca rotate begin`",
            )
        already = record.status == "revoked"
        if not already:
            pki.inventory.set_status(record.id, "revoked", revocation_reason=reason)
        # The CRL is staged first, so it is the first file to land: a server checking crl.pem
        # refuses the certificate before its files leave certs/NAME/.
        summary = write_crl(pki, now=now)
        if not already and record.status == "active":
            # The live files move to archive/NAME/SERIAL/ (pki.py layout), so a revoked
            # certificate is never picked up again from certs/NAME/.
            archived = pki.archive_files(record)
            if archived[0] is not None:
                for path in (record.cert_path, record.chain_path, record.key_path):
                    if path is not None:
                        tx.remove(path)
                pki.inventory.set_paths(record.id, archived)
    updated = pki.inventory.by_id(record.id)
    assert updated is not None
    return RevokeResult(updated, already, summary)


def find_revocation_target(pki: Pki, target: str) -> Record:
    """An active leaf by name, else any certificate by serial, else the latest revoked leaf by name."""
    record = pki.inventory.active_leaf(target)
    if record is not None:
        return record
    serial = normalise_serial(target)
    if serial is not None:
        record = pki.inventory.by_serial(serial)
        if record is not None:
            return record
    revoked = pki.inventory.query(kinds=_LEAF_KINDS, statuses=("revoked",), name=target)
    if revoked:
        return revoked[-1]
    return pki.find(target)  # raises NotFoundError with the known names as a hint


def normalise_serial(text: str) -> str | None:
    """'0xAB:CD', 'ab cd', 'ABCD' -> 'abcd' (the inventory's form); None if not hex."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or any(c not in "0123456789abcdef" for c in cleaned):
        return None
    return cleaned.lstrip("0") or "0"


# -- the CRL file -----------------------------------------------------------------------------
def crl_path(pki_path: Path | str) -> Path:
    return Path(pki_path) / CRL


def write_crl(
    pki: Pki, *, now: datetime | None = None, include_generations: Iterable[int] = ()
) -> CrlSummary:
    """Sign one CRL per live issuing CA, concatenate them, and write crl.pem atomically.

    Every live issuer gets a CRL, even an empty one: ``openssl verify -crl_check`` (and Go or
    Java with revocation checking on) fail with 'unable to get certificate CRL' when the
    issuer of the certificate has none.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    with pki.transaction() as tx:
        number = int(pki.inventory.get_meta(CRL_NUMBER_META, "0") or 0) + 1
        blobs: list[bytes] = []
        entries: list[CrlEntry] = []
        # thisUpdate is backdated like certificates' notBefore: a peer whose clock runs behind
        # would otherwise reject the CRL as 'not yet valid'.
        this_update = moment - profiles.BACKDATE
        next_update = moment + CRL_VALIDITY
        for generation in crl_generations(pki, now=moment, include=include_generations):
            ca = pki.load_ca(generation)
            revoked = [
                r for r in pki.inventory.query(kinds=_LEAF_KINDS, statuses=("revoked",), ca_generation=generation)
                # RFC 5280 3.3: a CRL must list unexpired revoked certificates; expired ones may go.
                if r.not_after > moment
            ]
            blobs.append(_sign_crl(ca, revoked, number, this_update, next_update))
            entries.append(CrlEntry(ca.info.subject, generation, len(revoked)))
        path = crl_path(pki.path)
        pki.inventory.set_meta(CRL_NUMBER_META, str(number))
        _store_crl(pki.inventory, StoredCrl(number, b"".join(blobs), this_update, next_update))
        tx.write(path, b"".join(blobs), PUBLIC_FILE_MODE)
    return CrlSummary(path, number, this_update, next_update, tuple(entries))


# -- the CRL in the inventory -------------------------------------------------------------------
@dataclass(frozen=True)
class StoredCrl:
    """The newest CRL as the inventory keeps it: crl.pem's bytes and their CRLNumber."""

    number: int
    pem: bytes
    this_update: datetime
    next_update: datetime


def _store_crl(inventory: Inventory, crl: StoredCrl) -> None:
    # Inside write_crl's transaction, under the writer lock (the advisory lock on PostgreSQL):
    # numbers only grow, and the row commits with the revocation it lists, or not at all.
    with inventory.transaction():
        inventory.run(crls.delete().where(crls.c.number <= crl.number))  # only the newest is served
        inventory.run(crls.insert().values(
            number=crl.number, crl_pem=crl.pem.decode("ascii"), this_update=inventory.timestamp(crl.this_update),
            next_update=inventory.timestamp(crl.next_update),
        ))


def newest_crl_number(inventory: Inventory) -> int | None:
    """The CRLNumber of the inventory's newest CRL (one indexed read), None if it holds none yet."""
    value = inventory.run(sa.select(sa.func.max(crls.c.number))).scalar()
    return int(value) if value is not None else None


def stored_crl(inventory: Inventory) -> StoredCrl | None:
    """The inventory's newest CRL; None before the first CRL signed by a grpcpki that stores it."""
    row = inventory.run(
        sa.select(crls.c.number, crls.c.crl_pem, crls.c.this_update, crls.c.next_update)
        .order_by(crls.c.number.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return StoredCrl(int(row.number), str(row.crl_pem).encode("ascii"), Inventory.moment(row.this_update),
                     Inventory.moment(row.next_update))


def crl_file_number(path: Path) -> int | None:
    """The CRLNumber of a crl.pem (its first CRL: grpcpki gives every CRL in it one number); None
    when the file is missing, damaged or has no number."""
    try:
        data = read_file(path, "CRL")
        found = _load_crls(data, source=str(path))
        return int(found[0].extensions.get_extension_for_class(x509.CRLNumber).value.crl_number) if found else None
    except (GrpcpkiError, x509.ExtensionNotFound, OSError):
        return None


def sync_crl_file(pki: Pki) -> int | None:
    """Rewrite this directory's crl.pem from the inventory if the database holds a newer CRL
    (another operator's directory, or a CA service replica, revoked since); its number, or None
    when nothing changed.

    The file is a copy of a signed CRL, so this needs no CA key and no writer lock on the
    shared rows; it takes this directory's file lock without waiting, so it never races a
    writer of this directory (who writes crl.pem itself) and never delays a command: when the
    lock is busy, the next command catches up.
    """
    newest = newest_crl_number(pki.inventory)
    path = crl_path(pki.path)
    if newest is None or (crl_file_number(path) or 0) >= newest:
        return None
    lock = StoreLock(pki.path, database="")  # this directory's flock only
    with contextlib.suppress(GrpcpkiError, OSError):
        if lock.acquire(blocking=False):
            try:
                stored = stored_crl(pki.inventory)
                if stored is not None and (crl_file_number(path) or 0) < stored.number:
                    atomic_write(path, stored.pem, PUBLIC_FILE_MODE)
                    return stored.number
            finally:
                lock.release()
    return None


class CrlCache:
    """What a CA service replica serves from GetCRL: the inventory's newest CRL, read again only
    when its number moves (one small query per call), else the directory's crl.pem (an
    inventory from before revision 0004 that has not signed a CRL since, or none revoked ever).

    Serving never signs, so a replica whose CA key is unreachable (a network HSM down) still
    serves the newest CRL. Thread-safe: one per server, shared by its worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._crl: StoredCrl | None = None

    def current(self, pki: Pki) -> bytes:
        newest = newest_crl_number(pki.inventory)
        if newest is None:
            path = crl_path(pki.path)
            return read_file(path, "CRL") if path.is_file() else b""
        with self._lock:
            cached = self._crl
        if cached is not None and cached.number == newest:
            return cached.pem
        stored = stored_crl(pki.inventory)
        if stored is None:  # pruned between the two reads by a newer one: the next call reads it
            return cached.pem if cached is not None else b""
        with self._lock:
            if self._crl is None or self._crl.number < stored.number:
                self._crl = stored
        # Peers and `serve` on this machine read the file: bring it up to date too.
        with contextlib.suppress(GrpcpkiError, OSError):
            sync_crl_file(pki)
        return stored.pem


def crl_generations(pki: Pki, *, now: datetime | None = None, include: Iterable[int] = ()) -> list[int]:
    """CA generations whose issuing CA needs a CRL: the current one, and older ones still
    trusted by ca.crt that have active or revoked-but-unexpired leaves."""
    moment = now or datetime.now(UTC)
    anchors = {info.fingerprint_sha256 for info in pki.trust_anchors()}
    wanted = {pki.generation, *include}
    for record in pki.inventory.query(kinds=_LEAF_KINDS, statuses=("active", "revoked")):
        if record.status == "revoked" and record.not_after <= moment:
            continue
        wanted.add(record.ca_generation or 1)
    result = []
    for generation in sorted(wanted):
        root = pki.ca_dir(generation) / "root.crt"
        if not pki.store_file_exists(root):
            continue
        # A generation whose root left the bundle (after `ca rotate finish`) is no longer
        # trusted by anyone: its certificates fail without a CRL.
        root_info = cert_info(pki.read_store_file(root, "CA certificate"))
        if generation == pki.generation or root_info.fingerprint_sha256 in anchors:
            result.append(generation)
    return result


def refresh_crl_if_due(pki: Pki, *, now: datetime | None = None) -> CrlSummary | None:
    """Re-sign crl.pem if it exists and a third or less of its validity is left."""
    path = crl_path(pki.path)
    if not path.is_file():
        return None
    moment = now or datetime.now(UTC)
    crls = _load_crls(read_file(path, "CRL"), source=str(path))
    if crls:
        soonest = min(c.next_update_utc or moment for c in crls)
        if soonest - moment > CRL_VALIDITY / 3 and {c.issuer.rfc4514_string() for c in crls} >= _live_issuers(pki):
            return None
    return write_crl(pki, now=now)


def _live_issuers(pki: Pki) -> set[str]:
    """Subjects of the CAs that should have a CRL, read from the certificates (no key, no passphrase)."""
    subjects = set()
    for generation in crl_generations(pki):
        directory = pki.ca_dir(generation)
        issuing = directory / "intermediate.crt"
        cert_file = issuing if issuing.is_file() else directory / "root.crt"
        subjects.add(load_certificates(read_file(cert_file, "CA certificate"))[0].subject.rfc4514_string())
    return subjects


def _sign_crl(
    ca: CA, revoked: list[Record], number: int, this_update: datetime, next_update: datetime
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(min(next_update, ca.info.not_after))
        # RFC 5280 5.2.3: conforming CRL issuers MUST include the CRL number.
        .add_extension(x509.CRLNumber(number), critical=False)
        # RFC 5280 5.2.1: MUST include the AKI, so verifiers can match the CRL to the right
        # key when two CA generations share a name.
        .add_extension(authority_key_identifier(ca.certificate), critical=False)
    )
    for record in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(int(record.serial, 16)).revocation_date(
            record.revoked_at or this_update
        )
        flag = REASONS.get(record.revocation_reason or "unspecified", x509.ReasonFlags.unspecified)
        # RFC 5280 5.3.1: the reasonCode 'unspecified' SHOULD be absent.
        if flag is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    # Signed by the CA object, not a PEM round trip of its key: a key on a token has no PEM.
    crl = ca.sign_crl(builder)
    return crl.public_bytes(serialization.Encoding.PEM)


def _load_crls(data: bytes, *, source: str) -> list[x509.CertificateRevocationList]:
    blocks = [block.text for block in split_pem(data) if block.label == "X509 CRL"]  # linear: engine/pem.py
    if not blocks and data.strip():
        raise PemError(f"{source} holds no PEM CRL", "rewrite it with `grpcpki revoke` or delete it")
    try:
        return [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise PemError(f"{source} has a damaged CRL: {exc}", "rewrite it by rerunning `grpcpki revoke NAME`") from None


# -- the runtime check ------------------------------------------------------------------------
_CacheKey = tuple[int, int, int, int]
_cache: dict[Path, tuple[_CacheKey, frozenset[int]]] = {}
_cache_lock = threading.Lock()


def revoked_serials(pki_path: Path | str) -> frozenset[int]:
    """Serial numbers listed in ``PKI/crl.pem`` (or in ``pki_path`` itself if it is a CRL file).

    Cheap enough to call on every RPC: the file is parsed again only when its inode, size or
    mtime change (it is always replaced by an atomic rename). No crl.pem means nothing is
    revoked. Signatures are not re-checked here: the file is written by grpcpki in the PKI
    directory, which is already trusted to hold the CA bundle. Serials are random 159-bit
    numbers (certs.py), so one set across CA generations does not collide in practice.

    Raises PemError if the file exists but is damaged: failing closed is the caller's choice.
    """
    path = Path(pki_path)
    if not path.is_file():
        path = crl_path(path)
    key = file_stamp(path)
    if key is None:
        return frozenset()
    cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        data = read_file(path, "CRL")
    except NotFoundError:
        return frozenset()
    serials = frozenset(entry.serial_number for crl in _load_crls(data, source=str(path)) for entry in crl)
    with _cache_lock:
        _cache[path] = (key, serials)
    return serials


def is_revoked(pki_path: Path | str, serial: int | str) -> bool:
    """``revoked_serials`` for one serial (int, or hex as the inventory and CertInfo.serial_hex write it)."""
    if isinstance(serial, str):
        normalised = normalise_serial(serial)
        if normalised is None:
            raise NotFoundError(f"{serial!r} is not a hexadecimal serial number")
        serial = int(normalised, 16)
    return serial in revoked_serials(pki_path)


__all__ = [
    "CRL_VALIDITY",
    "REASONS",
    "CrlCache",
    "CrlEntry",
    "CrlSummary",
    "RevokeResult",
    "StoredCrl",
    "crl_file_number",
    "crl_generations",
    "crl_path",
    "find_revocation_target",
    "is_revoked",
    "newest_crl_number",
    "normalise_serial",
    "refresh_crl_if_due",
    "revoke",
    "revoked_serials",
    "stored_crl",
    "sync_crl_file",
    "write_crl",
]
