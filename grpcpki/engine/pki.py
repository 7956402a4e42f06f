"""The PKI directory: a CA, the certificates it issued, and the inventory that lists them.

Layout (documented for users in docs/layout.md)::

    pki/
      ca.crt                 trust bundle: the CA certificate(s) every server and client trusts
      inventory.db           SQLite inventory of everything issued
      crl.pem                certificate revocation list (after `grpcpki revoke`)
      ca/g1/root.crt         root CA certificate, generation 1
      ca/g1/root.key         root CA key (0600; encrypted with --encrypt)
      ca/g1/root.key.uri     instead of root.key: the PKCS#11 URI of the key on a token (--key-uri)
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

import base64
import binascii
import contextlib
import gc
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

from cryptography import x509

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
from grpcpki.engine.inventory import Inventory, NewRecord, Record, inventory_present
from grpcpki.engine.journal import (
    REPLACE_META,
    StoreTransaction,
    crash_point,
    exchange,
    finish_two_rename_swap,
    fsync_dir,
    new_txn_id,
    pending_journals,
    recover,
    run_transaction,
    write_journal,
)
from grpcpki.engine.lock import LOCK_FILE, LockHolder, StoreLock, lock_fd_for, lock_timeout_from_env
from grpcpki.engine.keys import (
    KeyType,
    PrivateKey,
    describe_key,
    is_encrypted_pem,
    load_private_key,
    public_key_bytes,
)
from grpcpki.engine.names import NameConstraints, San, validate_cert_name
from grpcpki.engine.profiles import Role
from grpcpki.engine.storage import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_dir,
    read_file,
)
from grpcpki.engine.verify import ChainCheck, verify_chain

if TYPE_CHECKING:
    from grpcpki.engine.hsm import TokenLogin

PassphraseSource = bytes | Callable[[], bytes] | None
LockWaitCallback = Callable[[LockHolder], None]

TRUST_BUNDLE = "ca.crt"
INVENTORY = "inventory.db"
CRL = "crl.pem"


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
class LeafRequest:
    """One leaf of a batch (:meth:`Pki.issue_many`): the arguments of :meth:`Pki.issue`."""

    role: Role
    name: str
    sans: Sequence[str | San] = ()
    days: int = profiles.DEFAULT_LEAF_DAYS
    key_type: KeyType = KeyType.ECDSA_P256
    also_client: bool = False
    also_server: bool = False
    name_as_san: bool = True
    replace: bool = False
    extra: dict[str, object] = field(default_factory=dict, compare=False)


class LeafFacts(NamedTuple):
    """What a worker of a pooled batch sends back per certificate (Pki.store_pooled): its row's
    facts, named as CertInfo names them, and never its key. A plain tuple pickles in ~6 us where
    a CertInfo took ~32 us (a third of a second of a batch of 10,000)."""

    serial: int
    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    key_type: str
    extended_key_usage: tuple[str, ...]

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    @classmethod
    def of(cls, info: CertInfo) -> LeafFacts:
        return cls(info.serial, info.subject, tuple(str(s) for s in info.sans), info.issuer, info.not_before,
                   info.not_after, info.fingerprint_sha256, info.key_type, info.extended_key_usage)


@dataclass(frozen=True)
class LockOptions:
    """How a writer waits for the PKI lock: at most ``timeout`` seconds, telling ``on_wait`` once."""

    timeout: float | None = None  # None: $GRPCPKI_LOCK_TIMEOUT, else lock.DEFAULT_LOCK_TIMEOUT
    on_wait: LockWaitCallback | None = None
    command: str | None = None  # what a waiting process is told we are, e.g. "grpcpki renew"


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


def split_kind(name: str, kind: str | None = None) -> tuple[str | None, str]:
    """'server/orders' -> ('server', 'orders'); 'orders' -> (kind, 'orders'). Names cannot hold
    '/', so the prefix form never clashes with a name."""
    prefix, slash, rest = name.partition("/")
    if slash and prefix in ("server", "client"):
        if kind is not None and kind != prefix:
            raise InvalidNameError(f"{name!r} names a {prefix} certificate, but a {kind} one is needed here",
                                   f"use {kind}/{rest}")
        return prefix, rest
    return kind, name


class Pki:
    """A PKI directory on disk. Open with :meth:`open`, create with :meth:`init`.

    Every method that changes the store takes the PKI lock and runs as one store transaction
    (:mod:`grpcpki.engine.journal`); :meth:`transaction` groups several into one.
    """

    def __init__(
        self, path: Path, inventory: Inventory, passphrase: PassphraseSource = None, lock: LockOptions | None = None,
        token_login: TokenLogin | None = None,
    ) -> None:
        self.path = path
        self.inventory = inventory
        self._passphrase = passphrase
        # How to reach a PKCS#11 token holding CA keys (module, PIN); None: from the environment.
        self.token_login = token_login
        # (generation, CA): a CA rotation moves the generation, which invalidates the cache.
        self._signing_ca: tuple[int, CA] | None = None
        options = lock or LockOptions()
        self._lock = StoreLock(
            path,
            timeout=lock_timeout_from_env() if options.timeout is None else options.timeout,
            on_wait=options.on_wait,
            command=options.command,
        )
        self._tx: StoreTransaction | None = None

    # -- opening ------------------------------------------------------------------------
    @staticmethod
    def exists(path: Path | str) -> bool:
        return inventory_present(Path(path)) and (Path(path) / TRUST_BUNDLE).is_file()

    @classmethod
    def open(
        cls, path: Path | str, passphrase: PassphraseSource = None, *, lock: LockOptions | None = None,
        token_login: TokenLogin | None = None,
    ) -> Pki:
        path = Path(path)
        if not cls.exists(path):
            _recover_unlocked(path)  # an init-ca killed before its commit point leaves no CA but temp files
            if not cls.exists(path):
                raise NoCAError(
                    f"no CA in {path.resolve()}",
                    "create one with `grpcpki init-ca`, or point --pki / GRPCPKI_HOME at your PKI directory",
                )
        pki = cls(path, Inventory(path / INVENTORY, path), passphrase, lock, token_login)
        if pending_journals(path):
            # A writer was killed mid-change: finish or undo it now if nobody else is writing
            # (a reader never waits: if the lock is busy, its holder recovers first).
            with contextlib.suppress(GrpcpkiError, OSError):
                if pki._lock.acquire(blocking=False):
                    try:
                        recover(path, pki.inventory)
                    finally:
                        pki._lock.release()
        return pki

    # -- the lock and the transaction -------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the PKI lock (re-entrant); taking it first applies the recovery rule."""
        first = not self._lock.held
        self._lock.acquire()
        try:
            if first:
                if self.inventory.replaced():
                    # `init-ca --force` swapped the PKI while we waited: work on the new one,
                    # with its own CA, never write the new PKI's files against the old rows.
                    self._reopen()
                recover(self.path, self.inventory)
            yield
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """One all-or-nothing change of files and rows, under the lock; nested calls join the outer one.

        ``with pki.transaction(): pki.store_leaf(a); pki.store_leaf(b)`` writes one journal,
        syncs once and commits once.
        """
        if self._tx is not None:
            yield self._tx
            return
        with _no_cyclic_gc(), self.locked(), run_transaction(self.path, self.inventory) as tx:
            self._tx = tx
            try:
                yield tx
            finally:
                self._tx = None

    def current_transaction(self) -> StoreTransaction:
        """The transaction a caller inside ``with pki.transaction()`` adds its files to."""
        if self._tx is None:
            raise RuntimeError("not inside Pki.transaction()")
        return self._tx

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
        lock: LockOptions | None = None,
        key_uri: str | None = None,
        token_login: TokenLogin | None = None,
    ) -> Pki:
        """Create a CA (root, and an issuing intermediate if asked) in a new PKI directory.

        With ``force`` an existing PKI is replaced: the new one is built in a hidden sibling
        directory and swapped in atomically, and the old one is kept as ``PKI.replaced-TIMESTAMP``.
        With ``key_uri`` (an RFC 7512 PKCS#11 URI) the CA keys are generated on that token and
        never leave it: the root's under the URI's object label, the intermediate's under the
        same label plus ``-intermediate`` (engine/hsm.py); they are deleted again if init fails.
        """
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
        token_keys = generate_token_keys(key_uri, key_type, token_login, intermediate) if key_uri else []
        try:
            root = CA.create(
                name, org=org, key_type=key_type, days=days, path_len=path_len, constraints=constraints, now=now,
                key=token_keys[0] if token_keys else None,
            )
            issuing = None
            if intermediate:
                issuing = root.create_intermediate(
                    f"{name} Issuing CA", org=org, key_type=key_type,
                    days=min(profiles.DEFAULT_INTERMEDIATE_DAYS, days), now=now,
                    key=token_keys[1] if token_keys else None,
                )
            files = _ca_files(root, issuing, passphrase)
            created = not path.exists()
            ensure_dir(path, exact=True)  # 0700 even if it existed: docs/security.md, "File modes"
            options = lock or LockOptions()
            store_lock = StoreLock(
                path, timeout=lock_timeout_from_env() if options.timeout is None else options.timeout,
                on_wait=options.on_wait, command=options.command,
            )
            store_lock.acquire()
        except BaseException:
            destroy_token_keys(token_keys)
            raise
        try:
            existing = Inventory(path / INVENTORY, path) if inventory_present(path) else None
            try:
                recover(path, existing)
            finally:
                if existing is not None:
                    existing.close()
            if cls.exists(path) and not force:  # another init-ca won the race while we waited
                raise CAExistsError(
                    f"a CA already exists in {path.resolve()}",
                    "use it, pick another --pki directory, or pass --force to replace it",
                )
            if force and _has_content(path):
                if existing is not None and existing.shared:
                    raise CAExistsError(
                        f"init-ca --force cannot replace a CA whose inventory is the shared database {existing.location}",
                        "create the new CA with a new, empty database (--db URL), or keep this one",
                    )
                inventory = _replace_pki(path, store_lock, files, name, intermediate)
            else:
                inventory = Inventory(path / INVENTORY, path)
                try:
                    if inventory.shared and inventory.count(kinds=("root",), statuses=None):
                        # Another operator's init-ca made the CA this database describes: a
                        # second CA would sign certificates that nobody's trust bundle holds.
                        raise CAExistsError(
                            f"the shared inventory {inventory.location} already belongs to a CA",
                            "copy that CA's PKI directory (ca.crt, ca/) from the operator who created it, "
                            "or use a new, empty database",
                        )
                    _write_ca(path, inventory, files, name, intermediate)
                except BaseException:
                    inventory.close()
                    raise
        except BaseException:
            store_lock.release()
            if created and not cls.exists(path):
                # Nothing half-made survives a failed first init.
                shutil.rmtree(path, ignore_errors=True)
            if not cls.exists(path) or not _uses_keys(path, token_keys):
                destroy_token_keys(token_keys)
            raise
        store_lock.release()
        return cls(path, inventory, passphrase, lock, token_login)

    # -- CA -----------------------------------------------------------------------------
    @property
    def trust_bundle_path(self) -> Path:
        return self.path / TRUST_BUNDLE

    def trust_anchors(self) -> list[CertInfo]:
        """The CA certificates in ca.crt (two during a CA rotation's overlap)."""
        return cert_infos(self.read_store_file(self.trust_bundle_path, "trust bundle"), source="trust bundle")

    def read_store_file(self, path: Path, what: str = "file") -> bytes:
        """A file of the PKI as the current transaction will leave it (its pending write, else the disk)."""
        if self._tx is not None:
            data = self._tx.pending(path)
            if data is not None:
                return data
        return read_file(path, what)

    def store_file_exists(self, path: Path) -> bool:
        return (self._tx is not None and self._tx.pending(path) is not None) or path.is_file()

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
        root_cert_path = ca_dir / "root.crt"
        inter_cert_path = ca_dir / "intermediate.crt"
        use_intermediate = issuing and self.store_file_exists(inter_cert_path)
        cert_path = inter_cert_path if use_intermediate else root_cert_path
        certificate = load_certificates(self.read_store_file(cert_path, "CA certificate"), source="CA certificate")[0]
        key = self.load_ca_key(self.ca_key_file(ca_dir, "intermediate" if use_intermediate else "root"), certificate)
        parents = (
            load_certificates(self.read_store_file(root_cert_path, "root CA certificate")) if use_intermediate else []
        )
        return CA(certificate, key, parents)

    def ca_key_file(self, directory: Path, stem: str) -> Path:
        """Where the key of CA certificate ``STEM.crt`` is: ``STEM.key``, or ``STEM.key.uri``
        holding the PKCS#11 URI of a key on a token (docs/layout.md)."""
        key_file = directory / f"{stem}.key"
        uri_file = directory / f"{stem}{KEY_URI_SUFFIX}"
        return uri_file if self.store_file_exists(uri_file) and not self.store_file_exists(key_file) else key_file

    def load_ca_key(self, key_path: Path, certificate: x509.Certificate | None = None) -> PrivateKey:
        """The one loader of CA keys: a PEM file (decrypted with the passphrase when it is
        encrypted), or the PKCS#11 token key that a ``.key.uri`` file names (engine/hsm.py)."""
        if key_path.name.endswith(KEY_URI_SUFFIX):
            from grpcpki.engine import hsm

            uri = self.read_store_file(key_path, "CA key URI").decode().strip()
            token_key = hsm.load_key(uri, self.token_login)
            if certificate is not None:
                hsm.check_pair(token_key, certificate.public_key())
            return token_key  # type: ignore[return-value]
        key_pem = self.read_store_file(key_path, "CA key")
        passphrase = self.passphrase_value() if is_encrypted_pem(key_pem) else None
        return load_private_key(key_pem, passphrase, source="CA key")

    def signing_key_needs_secret(self) -> bool:
        """Does unlocking the signing CA take a passphrase (an encrypted key) or a token PIN (a key
        on a PKCS#11 token)? Cheap: reads the key file's header, decrypts nothing."""
        if self._signing_ca is not None and self._signing_ca[0] == self.generation:
            return False  # already unlocked
        ca_dir = self.ca_dir()
        stem = "intermediate" if self.store_file_exists(ca_dir / "intermediate.crt") else "root"
        key_file = self.ca_key_file(ca_dir, stem)
        if key_file.name.endswith(KEY_URI_SUFFIX):
            return True
        try:
            return is_encrypted_pem(self.read_store_file(key_file, "CA key"))
        except GrpcpkiError:
            return True  # unreadable: let signing_ca say why, before the lock

    def signing_ca(self) -> CA:
        """The CA that signs new leaves: the current generation's intermediate, or its root."""
        generation = self.generation
        if self._signing_ca is None or self._signing_ca[0] != generation:
            try:
                ca = self.load_ca(generation)
            except GrpcpkiError:
                # Read outside the lock while `init-ca --force` swapped the directory: the
                # certificate may come from one PKI and the key from the other. Read the new one.
                if self._lock.held or not self.inventory.replaced():
                    raise
                self._reopen()
                return self.signing_ca()
            self._signing_ca = (generation, ca)
        return self._signing_ca[1]

    def _reopen(self) -> None:
        """Follow a PKI directory that `init-ca --force` replaced: its inventory, its CA."""
        self.inventory.close()
        self.inventory = Inventory(self.path / INVENTORY, self.path)
        self._signing_ca = None

    def ca_records(self) -> list[Record]:
        return self.inventory.query(kinds=("root", "intermediate", "cross"), statuses=None)

    # -- leaves -------------------------------------------------------------------------
    def leaf_dir(self, name: str, kind: str | None = None) -> Path:
        """certs/NAME/ - or certs/NAME+KIND/ for the second kind of a NAME that is both a server
        and a client certificate (``+`` is not allowed in names, so it can never be another's)."""
        default = self.path / "certs" / name
        if kind not in ("server", "client"):
            return default
        occupant = self.inventory.active_leaf(name, "client" if kind == "server" else "server")
        if occupant is not None and occupant.cert_path is not None and occupant.cert_path.parent == default:
            return self.path / "certs" / f"{name}+{kind}"
        return default

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
        certificate (with the names given now) supersedes it and the old one is archived. The
        check runs again under the lock, so of two processes issuing one NAME only one succeeds.
        """
        request = LeafRequest(
            role, name, tuple(sans), days, key_type, also_client, also_server, name_as_san, replace
        )
        return self.issue_many([request], now=now)[0]

    def issue_many(
        self,
        requests: Sequence[LeafRequest],
        *,
        now: datetime | None = None,
        on_result: Callable[[LeafRequest, Record], None] | None = None,
        jobs: int | None = None,
    ) -> list[Record]:
        """Issue and store many leaves in one locked transaction: all of them, or none.

        One journal, one sync, one inventory commit for the whole batch, so a manifest of
        thousands of services costs little more than signing them. Every request is checked
        (names, SANs, NAME free unless ``replace``, no NAME twice) under the lock before the
        first is signed. A big batch is signed and staged by ``jobs`` worker processes
        (engine/workers.py; None: one per CPU, 1: all in this process).
        """
        seen: set[tuple[str, str]] = set()
        for request in requests:
            key = (request.name, Role(request.role).value)
            if key in seen:
                raise AlreadyExistsError(
                    f"{request.name!r} appears twice in one batch", "give each certificate a distinct name"
                )
            seen.add(key)
        records: list[Record] = []
        with self.transaction():
            ca = self.signing_ca()
            replaced = [
                self.check_can_issue(
                    r.name, kind=Role(r.role).value, sans=r.sans, name_as_san=r.name_as_san, replace=r.replace
                )
                for r in requests
            ]
            workers = self.pool_workers(len(requests), jobs)
            if workers:
                pooled = self.store_pooled(requests, replaced, workers=workers, now=now)
                for request, maybe in zip(requests, pooled, strict=True):
                    assert maybe is not None  # without on_refused, a refusal raises
                    records.append(maybe)
                    if on_result is not None:
                        on_result(request, maybe)
                return records
            leaves = [
                ca.issue(
                    request.role, request.name, sans=request.sans, days=request.days, key_type=request.key_type,
                    also_client=request.also_client, also_server=request.also_server,
                    name_as_san=request.name_as_san, now=now,
                )
                for request in requests
            ]
            for request, record in zip(requests, self.store_leaves(leaves, replaced), strict=True):
                assert record is not None  # without on_refused, a refusal raises
                records.append(record)
                if on_result is not None:
                    on_result(request, record)
        return records

    def check_can_issue(
        self, name: str, *, kind: str | None = None, sans: Iterable[str | San] = (), name_as_san: bool = True,
        replace: bool = False,
    ) -> Record | None:
        """Raise unless NAME may be issued with these SANs (valid names, at least one SAN, NAME free
        unless ``replace``); return the record it replaces. Names are unique per ``kind``: a server
        and a client can share one.

        Cheap and key-free, so a caller can run it before unlocking an encrypted CA key.
        """
        validate_cert_name(name)
        leaf_sans(name, sans, name_as_san=name_as_san)
        existing = self.inventory.active_leaf(name, kind)
        if existing is not None and not replace:
            other = self.inventory.active_leaf(name, "client" if existing.kind == "server" else "server")
            target = f"{existing.kind}/{name}" if other is not None else name
            raise AlreadyExistsError(
                f"{existing.kind} certificate {name!r} already exists (expires {existing.not_after:%Y-%m-%d})",
                f"`grpcpki renew {target}` renews it with the same names; add --replace to reissue it with these",
            )
        return existing

    def store_leaf(self, leaf: Leaf, *, replaces: Record | None = None) -> Record:
        """Write a leaf's files and inventory row together; archive ``replaces`` in the same step.

        ``replaces`` is read again under the lock: if it is no longer active (revoked or
        renewed meanwhile by another process) nothing is written and NotFoundError says why.
        """
        with self.transaction():
            return self.store_leaves([leaf], [replaces])[0]  # type: ignore[return-value]

    def store_leaves(
        self, leaves: Sequence[Leaf], replaces: Sequence[Record | None] | None = None, *,
        on_refused: Callable[[int, GrpcpkiError], None] | None = None,
    ) -> list[Record | None]:
        """:meth:`store_leaf` for a batch, inside the current transaction: the files of every leaf
        staged in the journal, and the rows written by three statements whatever the size
        (Inventory.add_many), not three per certificate.

        ``replaces[i]`` is the active record ``leaves[i]`` supersedes (None: a new name). Every
        item is checked against the inventory as it is under the lock (one query per 500 names):
        a record no longer active, or a new NAME already taken, raises before anything is staged,
        unless ``on_refused`` is given: then it is told (index, error) and that item is skipped
        (its entry in the result is None), which is how ``renew --all`` lets one certificate fail
        without the others.
        """
        tx = self._tx
        assert tx is not None, "call inside Pki.transaction()"
        olds: Sequence[Record | None] = replaces if replaces is not None else [None] * len(leaves)
        inventory = self.inventory
        generation = self.generation
        cross_pem = self.cross_chain_pem()
        # (name, kind) -> (id, cert_path as stored) of what is active now, and of what this batch adds.
        active = inventory.active_leaf_map([leaf.name for leaf in leaves])
        root = str(self.path)
        results: list[Record | None] = [None] * len(leaves)
        news: list[NewRecord] = []
        supersede: list[tuple[int, tuple[str | None, str | None, str | None]] | None] = []
        stored: list[int] = []
        with tx.item():
            for index, (leaf, old) in enumerate(zip(leaves, olds, strict=True)):
                kind = leaf.role.value
                name = leaf.name
                slot = _batch_slot(name, kind, old, active, root)
                if isinstance(slot, GrpcpkiError):
                    if on_refused is None:
                        raise slot
                    on_refused(index, slot)
                    continue
                directory = slot
                cert_file, chain_file, key_file = f"{directory}/cert.pem", f"{directory}/chain.pem", f"{directory}/key.pem"
                # A leaf signed from a CSR (engine/csr.py) has no key here: its key stays with the requester.
                keyless = not leaf.key_pem
                if old is not None:
                    supersede.append((old.id, self._archive(old)))
                else:
                    supersede.append(None)
                # Key before certificate: a hot-reloading server that sees the new cert has the new key
                # (the journal replays renames in this order too).
                if not keyless:
                    tx.write(key_file, leaf.key_pem, PRIVATE_FILE_MODE)
                elif os.path.isfile(key_file):
                    tx.remove(key_file)  # the old certificate's key (archived above) must not sit beside the new one
                tx.write(cert_file, leaf.cert_pem, PUBLIC_FILE_MODE)
                tx.write(chain_file, leaf.chain_pem + cross_pem, PUBLIC_FILE_MODE)
                news.append(_new_record(leaf.info, kind, name, generation, cert_file, chain_file,
                                        None if keyless else key_file))
                _claim(active, name, kind, old, cert_file, root)
                stored.append(index)
            records = inventory.add_many(news, supersede)
        for index, record in zip(stored, records, strict=True):
            results[index] = record
        return results

    def pool_workers(self, count: int, jobs: int | None) -> int:
        """How many worker processes a batch of ``count`` new certificates gets (0: sign here).
        ``jobs``: the --jobs asked for (None: one per CPU). See engine/workers.py."""
        from grpcpki.engine.workers import pool_size

        return pool_size(count, jobs, self.signing_ca())

    def store_pooled(
        self, requests: Sequence[LeafRequest], replaces: Sequence[Record | None] | None = None, *,
        workers: int, now: datetime | None = None,
        on_refused: Callable[[int, GrpcpkiError], None] | None = None,
        on_signed: Callable[[int, LeafFacts], None] | None = None,
    ) -> list[Record | None]:
        """:meth:`store_leaves` for leaves not yet signed, in ``workers`` forked processes
        (engine/workers.py): each signs its share, hard-links what a leaf replaces into its archive
        folder and writes the new key (0600), certificate and chain, all at temp names the journal
        listed before the pool started; it sends back the facts for the rows, never a key. Then the rows,
        as store_leaves writes them.

        Inside the current transaction, which must not have written its journal yet. A request
        the CA refuses, or whose record is no longer active, goes to ``on_refused`` (or raises,
        without it); a failed worker raises StoreError, and the transaction's roll back removes
        every temp file. ``on_signed(index, info)`` is told as each certificate is staged, in no
        set order.
        """
        from grpcpki.engine.journal import current_umask, stage_archive, stage_file, sync_filesystem
        from grpcpki.engine.workers import Refused, run_pool

        tx = self._tx
        assert tx is not None, "call inside Pki.transaction()"
        ca = self.signing_ca()
        olds: Sequence[Record | None] = replaces if replaces is not None else [None] * len(requests)
        generation = self.generation
        cross_pem = self.cross_chain_pem()
        active = self.inventory.active_leaf_map([r.name for r in requests])
        root = str(self.path)
        # Per job: its index in requests, the record it replaces, the temp name of its archive
        # folder (None: nothing to keep), its three files and their temp names.
        jobs: list[tuple[int, Record | None, str | None, tuple[str, str, str], tuple[str, str, str]]] = []
        for index, (request, old) in enumerate(zip(requests, olds, strict=True)):
            kind = Role(request.role).value
            slot = _batch_slot(request.name, kind, old, active, root)
            if isinstance(slot, GrpcpkiError):
                if on_refused is None:
                    raise slot
                on_refused(index, slot)
                continue
            files = (f"{slot}/cert.pem", f"{slot}/chain.pem", f"{slot}/key.pem")
            archive = None
            if old is not None and old.has_cert:
                archive = tx.deferred_archive(f"{root}/{_archive_folder(old)}")
            # Listed key first: the journal replays renames in its order (key before certificate).
            key_temp = tx.deferred_write(files[2], PRIVATE_FILE_MODE, new_folder=old is None)
            temps = (tx.deferred_write(files[0], PUBLIC_FILE_MODE), tx.deferred_write(files[1], PUBLIC_FILE_MODE),
                     key_temp)
            jobs.append((index, old, archive, files, temps))
            _claim(active, request.name, kind, old, files[0], root)
        umask = current_umask()
        tx.write_journal_now()

        def stage(start: int, end: int) -> list[tuple[LeafFacts, tuple[str | None, str | None, str | None]] | Refused]:
            """A range of jobs, in a worker process: all signed first, then all their files (signing
            between file system calls ran ~1.5x slower: the calls evict the P-256 tables from the caches)."""
            leaves: list[Leaf | Refused] = []
            for index, *_rest in jobs[start:end]:
                request = requests[index]
                try:
                    leaves.append(ca.issue(
                        request.role, request.name, sans=request.sans, days=request.days, key_type=request.key_type,
                        also_client=request.also_client, also_server=request.also_server,
                        name_as_san=request.name_as_san, now=now,
                    ))
                except GrpcpkiError as exc:
                    leaves.append(Refused(exc.message, exc.hint))  # nothing of it is written
            out: list[tuple[LeafFacts, tuple[str | None, str | None, str | None]] | Refused] = []
            for (_index, old, archive, _files, (cert_temp, chain_temp, key_temp)), leaf in zip(
                jobs[start:end], leaves, strict=True
            ):
                if isinstance(leaf, Refused):
                    out.append(leaf)
                    continue
                archived: tuple[str | None, str | None, str | None] = (None, None, None)
                if old is not None and archive is not None:
                    sources, archived = _archive_plan(old)
                    if sources:
                        stage_archive(archive, sources, umask)
                # Key before certificate, as everywhere: never a certificate on disk without its key.
                stage_file(key_temp, leaf.key_pem, PRIVATE_FILE_MODE, umask)
                stage_file(cert_temp, leaf.cert_pem, PUBLIC_FILE_MODE, umask)
                stage_file(chain_temp, leaf.chain_pem + cross_pem, PUBLIC_FILE_MODE, umask)
                out.append((LeafFacts.of(leaf.info), archived))
            return out

        results: list[Record | None] = [None] * len(requests)
        # Rows are written while the workers sign (a batch of them per ten ranges): this process
        # is otherwise idle then, and the rows of one range never touch another range's names.
        news: list[NewRecord] = []
        supersede: list[tuple[int, tuple[str | None, str | None, str | None]] | None] = []
        stored: list[int] = []
        started = False

        def write_rows() -> None:
            for index, record in zip(stored, self.inventory.add_many(news, supersede), strict=True):
                results[index] = record
            news.clear()
            supersede.clear()
            stored.clear()

        def staged(position: int, result: tuple[LeafFacts, tuple[str | None, str | None, str | None]] | Refused) -> None:
            nonlocal started
            if not started:
                started = True
                crash_point("pool running")
            index, old, _archive, files, _temps = jobs[position]
            if isinstance(result, Refused):
                error = GrpcpkiError(result.message, result.hint)
                if on_refused is None:
                    raise error
                on_refused(index, error)
                return  # nothing of it was written
            info, archived = result
            request = requests[index]
            news.append(_new_record(info, Role(request.role).value, request.name, generation, *files))
            if old is not None:
                supersede.append((old.id, archived))
            else:
                supersede.append(None)
            stored.append(index)
            if len(news) >= _ROWS_PER_STATEMENT:
                write_rows()
            if on_signed is not None:
                on_signed(index, info)

        if jobs:
            run_pool(stage, len(jobs), workers=workers, on_result=staged, flush=lambda: sync_filesystem(self.path))
        crash_point("pool done")
        if news:
            write_rows()
        return results

    def cross_chain_pem(self) -> bytes:
        """The cross certificate of the current CA generation, if a rotation made one.

        Appended to every new chain.pem while it exists (rotation.py), so peers that still
        trust only the old root can build leaf -> [intermediate] -> cross -> old root.
        """
        cross = self.ca_dir() / "cross.crt"
        return self.read_store_file(cross, "cross certificate") if self.store_file_exists(cross) else b""

    def archive_files(self, record: Record) -> tuple[Path | None, Path | None, Path | None]:
        """Keep a record's files in archive/NAME/SERIAL/ (inside the current transaction); the new paths."""
        return cast(
            "tuple[Path | None, Path | None, Path | None]",
            tuple(self.path / p if p is not None else None for p in self._archive(record)),
        )

    def _archive(self, record: Record) -> tuple[str | None, str | None, str | None]:
        """archive_files, with the paths relative to the PKI directory as the inventory stores them.

        Hard links, staged in the journal like any write: no bytes copied, and the key keeps its
        0600 from the first instant. Only files that really are this record's certificate are
        archived: a cert.pem that holds another serial (damaged, or replaced by hand) would file
        the wrong certificate under this serial, so nothing is archived then. The proof costs one
        read of cert.pem and of chain.pem's first bytes (a few microseconds each, no X.509 parse).
        """
        tx = self._tx
        assert tx is not None, "call inside Pki.transaction()"
        sources, archived = _archive_plan(record)
        if sources:
            tx.archive(f"{self.path}/{_archive_folder(record)}", sources)
        return archived

    def find(self, name: str, kind: str | None = None) -> Record:
        """The active leaf NAME; ``kind`` (or a ``server/NAME`` / ``client/NAME`` form) says which
        when a server and a client share the NAME (AmbiguousNameError otherwise)."""
        kind, name = split_kind(name, kind)
        record = self.inventory.active_leaf(name, kind)
        if record is None:
            other = self.inventory.active_leaf(name) if kind is not None else None
            if other is not None:
                raise NotFoundError(
                    f"{name!r} is a {other.kind} certificate, not a {kind} one",
                    f"issue a {kind} certificate under that name with `grpcpki issue {kind} {name}`",
                )
            known = sorted({r.name for r in self.inventory.query(kinds=("server", "client"))})
            hint = f"known names: {', '.join(known[:10])}" if known else "issue one with `grpcpki issue server|client NAME`"
            what = f"{kind} certificate" if kind else "certificate"
            raise NotFoundError(f"no active {what} named {name!r} in {self.path}", hint)
        return record

    def material(self, name: str, kind: str | None = None, *, prefer: str | None = None) -> Material:
        """The files of NAME. ``prefer``: the kind to take when NAME is both (``serve`` prefers the
        server, ``greet`` the client), while a NAME of one kind is still used as it is (a server
        certificate issued ``--also-client`` is a valid client)."""
        explicit, bare = split_kind(name, kind)
        if explicit is None and prefer is not None and self.inventory.active_leaf(bare, prefer) is not None:
            explicit = prefer
        record = self.find(bare, explicit)
        name = record.name
        if record.key_path is None:
            raise NotFoundError(
                f"{record.kind} certificate {name!r} was signed from a CSR: its private key is with whoever "
                "made the CSR, not in this PKI",
                "use that key with the certificate files (serve/greet --cert --key --ca)",
            )
        assert record.cert_path and record.chain_path
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
        # Anything on disk but a folder is read as a file (read_file refuses FIFOs and devices by name).
        if not path.exists() or path.is_dir():
            named = split_kind(target)[0] is not None  # server/NAME or client/NAME, not a path
            if not named and (os.sep in target or target.endswith((".pem", ".crt", ".key"))):
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
    if path.name.endswith(KEY_URI_SUFFIX):
        # A CA key on a PKCS#11 token (engine/hsm.py): the file only names it.
        from grpcpki.engine.hsm import Pkcs11Uri

        uri = Pkcs11Uri.parse(data.decode(errors="replace").strip())
        where = f"on the PKCS#11 token {uri.token!r}, not extractable: {uri}"
        return Inspection(str(path), "private-key", key=KeyFacts(where, False, None))
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


def pem_fingerprint(pem: bytes) -> str | None:
    """SHA-256 of the DER of the first certificate in ``pem``, as the inventory writes it
    (``AB:CD:...``), or None if there is none. Cheap: no X.509 parsing."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start + 1)
    if start < 0 or stop < 0:
        return None
    try:
        der = base64.b64decode(b"".join(pem[start + len(begin):stop].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha256(der).digest().hex(":").upper()


_PEM_READ_LIMIT = 1 << 20  # far above any certificate chain grpcpki writes
# Rows a pooled batch writes at a time (Pki.store_pooled): SQLAlchemy sends up to 1,000 a statement.
_ROWS_PER_STATEMENT = 500


def _archive_folder(record: Record) -> str:
    """Where a superseded record's files are kept, relative to the PKI directory."""
    return f"archive/{record.name}/{record.serial}"


def _archive_plan(record: Record) -> tuple[tuple[str, ...], tuple[str | None, str | None, str | None]]:
    """What archiving ``record`` links (its own files: _archivable) and the paths they get, as
    the inventory stores them (cert, chain, key; None where a file is not kept)."""
    kept = _archivable(record)
    folder = _archive_folder(record)
    cert, chain, key = (None if current is None else f"{folder}/{os.path.basename(current)}" for current in kept)
    return tuple(current for current in kept if current is not None), (cert, chain, key)


def _archivable(record: Record) -> tuple[str | None, str | None, str | None]:
    """Which of a record's files (cert, chain, key) really are its own, to file under its serial
    (as text: a batch of 10,000 reads them in worker processes, where building Paths showed).

    A cert.pem that holds another serial (damaged, or replaced by hand) would file the wrong
    certificate under this serial, so nothing is archived then. The proof costs one read of
    cert.pem and of chain.pem's first bytes (a few microseconds each, no X.509 parse).
    """
    cert_path = record.path_text("cert_path")
    if cert_path is None:
        return None, None, None
    cert_pem = _read_head(cert_path, _PEM_READ_LIMIT)
    if not cert_pem or pem_fingerprint(cert_pem) != record.fingerprint:
        return None, None, None
    chain_path = record.path_text("chain_path")
    chain: str | None = None
    if chain_path is not None:
        # grpcpki writes chain.pem as cert.pem plus the CA chain: when it starts with the
        # very bytes just checked, its first certificate is this one without a decode.
        head = _read_head(chain_path, len(cert_pem))
        if head and (head == cert_pem or pem_fingerprint(_read_head(chain_path, _PEM_READ_LIMIT))
                     == record.fingerprint):
            chain = chain_path
    key_path = record.path_text("key_path")
    key = key_path if key_path is not None and os.path.isfile(key_path) else None
    return cert_path, chain, key


def _batch_slot(
    name: str, kind: str, old: Record | None, active: dict[tuple[str, str], tuple[int, str | None]], root: str
) -> GrpcpkiError | str:
    """Where a batch item's files go (its folder), or why it is refused, against ``active``: what
    the inventory holds under the lock plus what the batch has claimed so far (``_claim``)."""
    current = active.get((name, kind))
    replaced = active.get((old.name, old.kind)) if old is not None else None
    if old is not None and (replaced is None or replaced[0] != old.id):
        return NotFoundError(
            f"{old.name!r} (serial {old.serial}) is no longer active: another grpcpki command "
            "revoked or reissued it meanwhile",
            f"see `grpcpki list --all`; issue it anew with `grpcpki issue {old.kind} {old.name}`",
        )
    if current is not None and (old is None or (old.name, old.kind) != (name, kind)):
        return AlreadyExistsError(
            f"{kind} certificate {name!r} already exists",
            f"`grpcpki renew {name}` renews it with the same names; add --replace to reissue it with these",
        )
    # A reissue stays where its certificate was (servers are configured with that path).
    old_cert = old.path_text("cert_path") if old is not None else None
    if old_cert is not None:
        return os.path.dirname(old_cert)
    other = active.get((name, "client" if kind == "server" else "server"))
    if other is not None and other[1] is not None and os.path.dirname(other[1]) == f"certs/{name}":
        # certs/NAME+KIND for the second kind of a NAME ('+' is never in a name: leaf_dir).
        return f"{root}/certs/{name}+{kind}"
    return f"{root}/certs/{name}"


def _claim(
    active: dict[tuple[str, str], tuple[int, str | None]], name: str, kind: str, old: Record | None, cert_file: str,
    root: str,
) -> None:
    if old is not None:
        del active[(old.name, old.kind)]
    active[(name, kind)] = (-1, cert_file[len(root) + 1:])


def _new_record(
    info: CertInfo | LeafFacts, kind: str, name: str, generation: int, cert_file: str, chain_file: str,
    key_file: str | None,
) -> NewRecord:
    """A leaf's inventory row, from the values just signed (never parsed back from PEM)."""
    return NewRecord(
        serial=info.serial_hex, kind=kind, name=name, subject=info.subject,
        sans=[str(s) for s in info.sans], issuer=info.issuer,
        not_before=info.not_before, not_after=info.not_after,
        fingerprint=info.fingerprint_sha256, key_type=info.key_type,
        eku=info.extended_key_usage, ca_generation=generation,
        cert_path=cert_file, chain_path=chain_file, key_path=key_file,
    )


def _read_head(path: Path | str, size: int) -> bytes:
    """Up to ``size`` bytes of ``path`` (b"" if it cannot be read): one open and one read(2),
    without the buffered file object of Path.read_bytes (it shows at 10,000 archives)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, size)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection during a store transaction: a batch of 10,000 keeps a million
    objects alive (rows, journal entries, signed leaves), and each full collection walks them all
    while making next to no garbage (gc_collect_main was ~6% of `renew --all` at 10,000).
    Reference counting frees everything as usual; the collector's state is restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _recover_unlocked(path: Path) -> None:
    """Apply the recovery rule to a directory that is not (yet) a PKI, if nobody holds its lock."""
    if not path.exists():
        finish_two_rename_swap(path)
    if not pending_journals(path):
        return
    lock = StoreLock(path)
    with contextlib.suppress(GrpcpkiError, OSError):
        if lock.acquire(blocking=False):
            try:
                inventory = Inventory(path / INVENTORY, path) if inventory_present(path) else None
                try:
                    recover(path, inventory)
                finally:
                    if inventory is not None:
                        inventory.close()
            finally:
                lock.release()


_CaFiles = list[tuple[str, bytes, int]]
KEY_URI_SUFFIX = ".key.uri"


def ca_key_entry(stem: str, ca: CA, passphrase: bytes | None) -> tuple[str, bytes, int]:
    """The file that keeps a CA's key: ``STEM.key`` (PEM, 0600), or, for a key on a token,
    ``STEM.key.uri`` holding its PKCS#11 URI (no secret in it: the PIN is never written)."""
    if ca.key_uri is not None:
        return f"{stem}{KEY_URI_SUFFIX}", (ca.key_uri + "\n").encode(), PUBLIC_FILE_MODE
    return f"{stem}.key", ca.private_key_pem(passphrase), PRIVATE_FILE_MODE


def generate_token_keys(
    key_uri: str, key_type: KeyType, token_login: TokenLogin | None, with_intermediate: bool
) -> list[PrivateKey]:
    """New CA keys on a token: the URI's for the root (or the only new CA), then ``-intermediate``."""
    from grpcpki.engine import hsm

    uri = hsm.Pkcs11Uri.parse(key_uri)
    uris = [uri, uri.intermediate()] if with_intermediate else [uri]
    return hsm.generate_keys(uris, key_type, token_login)  # type: ignore[return-value]


def destroy_token_keys(keys: Iterable[object]) -> None:
    """Delete token keys made for a CA that was not created after all: nothing half-made stays."""
    for key in keys:
        destroy = getattr(key, "destroy", None)
        if destroy is not None:
            destroy()


def _uses_keys(path: Path, keys: Sequence[object]) -> bool:
    """Does the PKI at ``path`` refer to these token keys (so they must be kept)?"""
    recorded = "".join(_read_or_empty(p).decode(errors="replace") for p in path.glob(f"ca/*/*{KEY_URI_SUFFIX}"))
    return any(str(getattr(key, "uri", "")) in recorded for key in keys)


def _ca_files(root: CA, issuing: CA | None, passphrase: bytes | None) -> _CaFiles:
    ca_dir = f"ca/g{1}"
    root_key, root_key_pem, root_key_mode = ca_key_entry("root", root, passphrase)
    files: _CaFiles = [
        (f"{ca_dir}/{root_key}", root_key_pem, root_key_mode),
        (f"{ca_dir}/root.crt", root.cert_pem, PUBLIC_FILE_MODE),
    ]
    if issuing is not None:
        issuing_key, issuing_key_pem, issuing_key_mode = ca_key_entry("intermediate", issuing, passphrase)
        files.append((f"{ca_dir}/{issuing_key}", issuing_key_pem, issuing_key_mode))
        files.append((f"{ca_dir}/intermediate.crt", issuing.cert_pem, PUBLIC_FILE_MODE))
    # The trust bundle last: Pki.exists() looks for it, so a PKI appears only once complete.
    files.append((TRUST_BUNDLE, root.cert_pem, PUBLIC_FILE_MODE))
    return files


def _write_ca(
    path: Path, inventory: Inventory, files: _CaFiles, name: str, intermediate: bool, replaces_txn: str | None = None
) -> None:
    """The files and rows of a new CA, as one store transaction in ``path`` (locked by the caller)."""
    with run_transaction(path, inventory) as tx:
        for relative, data, mode in files:
            tx.write(path / relative, data, mode)
        ca_dir = path / "ca" / "g1"
        written = {relative for relative, _data, _mode in files}
        for relative, data, _mode in files:
            if relative.endswith(".crt") and relative.startswith("ca/"):
                kind = "intermediate" if relative.endswith("intermediate.crt") else "root"
                info = cert_info(data)
                inventory.add(
                    NewRecord(
                        serial=info.serial_hex, kind=kind, name=name if kind == "root" else f"{name} Issuing CA",
                        subject=info.subject,
                        sans=[], issuer=info.issuer, not_before=info.not_before, not_after=info.not_after,
                        fingerprint=info.fingerprint_sha256, key_type=info.key_type, ca_generation=1,
                        cert_path=ca_dir / f"{kind}.crt",
                        key_path=ca_dir / (f"{kind}{KEY_URI_SUFFIX}" if f"ca/g1/{kind}{KEY_URI_SUFFIX}" in written
                                           else f"{kind}.key"),
                    )
                )
        inventory.set_meta("ca_generation", "1")
        inventory.set_meta("intermediate", "1" if intermediate else "0")
        if replaces_txn is not None:
            inventory.set_meta(REPLACE_META, replaces_txn)


def _has_content(path: Path) -> bool:
    try:
        return any(entry.name not in (LOCK_FILE,) for entry in os.scandir(path))
    except OSError:
        return False


def _replace_pki(path: Path, store_lock: StoreLock, files: _CaFiles, name: str, intermediate: bool) -> Inventory:
    """``init-ca --force``: build the new PKI beside the old one, swap them, keep the old one as a backup.

    Recovery (journal.recover_replace) finishes or undoes each step after a crash, so the user
    has a working PKI (the old one or the new one) at every instant.
    """
    txn_id = new_txn_id()
    staging = path.with_name(f".{path.name}.new-{txn_id}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.replaced-{stamp}")
    counter = 1
    while backup.exists():
        counter += 1
        backup = path.with_name(f"{path.name}.replaced-{stamp}-{counter}")
    body: dict[str, object] = {"kind": "replace", "staging": staging.name, "backup": backup.name}
    write_journal(path, txn_id, body)
    new_lock_fd: int | None = None
    try:
        ensure_dir(staging)
        new_lock_fd = lock_fd_for(staging)  # waiters that follow the swap find the new PKI locked
        write_journal(staging, txn_id, body)
        staged = Inventory(staging / INVENTORY, staging)
        try:
            _write_ca(staging, staged, files, name, intermediate, replaces_txn=txn_id)
        finally:
            # Closed before the swap: SQLite finds its -wal and -shm files by name.
            staged.close()
        crash_point("before swap")
        if exchange(staging, path):
            crash_point("after swap")
            os.replace(staging, backup)  # the staging name now holds the old PKI
        else:
            # No RENAME_EXCHANGE on this filesystem: two renames, with a short gap recovered by
            # the journal copy inside the new PKI.
            os.replace(path, backup)
            crash_point("between renames")
            os.replace(staging, path)
        fsync_dir(path.parent)
    except BaseException:
        if new_lock_fd is not None and not (path / INVENTORY).is_file():
            os.close(new_lock_fd)
        raise
    crash_point("after backup")
    with contextlib.suppress(FileNotFoundError):
        (backup / ".journal" / f"{txn_id}.json").unlink()
    with contextlib.suppress(FileNotFoundError):
        (path / ".journal" / f"{txn_id}.json").unlink()
    assert new_lock_fd is not None
    store_lock.adopt(new_lock_fd)
    return Inventory(path / INVENTORY, path)


__all__ = [
    "Inspection",
    "KeyFacts",
    "LeafFacts",
    "LeafRequest",
    "LockOptions",
    "Material",
    "Pki",
    "inspect_file",
    "split_kind",
    "pem_fingerprint",
    "validate_cert_name",
]
