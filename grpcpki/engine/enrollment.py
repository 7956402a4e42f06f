"""Enrollment and renewal for the CA service (``grpcpki ca-server``), without any gRPC.

Two ways to get a certificate from the service, both signing a CSR through the same path as
``grpcpki sign`` (engine/csr.py: the CSR's signature checked, names checked by the rules of
``issue`` and the CA's name constraints, every extension from the profile):

- :func:`enroll`: a one-time enrollment token (:func:`create_token`, created by an operator for one
  NAME and kind) authorizes one certificate. The names come from the token; names the CSR asks
  for must be among them (a CSR cannot widen what the operator allowed).
- :func:`renew_presented`: the caller presented its current certificate in the mTLS handshake. It
  must be exactly a certificate of this PKI (same SHA-256 fingerprint as its inventory row), the
  active one for its NAME, unexpired and unrevoked. NAME, kind and names come from that row;
  only the public key comes from the CSR, so rekeying is allowed and the identity is not.

Policy (:class:`Policy`): a maximum lifetime and a rate limit per identity (NAME), counted from
the audit rows. Each issuance writes an audit row (who, what, when, serial, which replica) in the
same store transaction as the certificate (engine/enroll_store.py), under the PKI lock.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from grpcpki.engine.certs import leaf_sans
from grpcpki.engine.csr import CsrInfo, read_csr, sign_csr
from grpcpki.engine.enroll_store import AuditRow, EnrollmentStore, SqlEnrollmentStore, TokenRow
from grpcpki.engine.errors import GrpcpkiError
from grpcpki.engine.inventory import Record
from grpcpki.engine.journal import StoreTransaction
from grpcpki.engine.names import San, parse_san, validate_dns_name, validate_ip, validate_spiffe_id, validate_uri
from grpcpki.engine.pki import Pki, validate_cert_name
from grpcpki.engine.profiles import Role
from grpcpki.engine.reissue import plan_issue

# Tokens look like this, so a leaked one is recognisable (secret scanners match on prefixes).
TOKEN_PREFIX = "grpcpki-enroll-"
DEFAULT_TOKEN_TTL = timedelta(hours=1)
# Workloads renew themselves, so the service issues short-lived certificates by default.
DEFAULT_MAX_DAYS = 30


class EnrollmentError(GrpcpkiError):
    """A request the CA service refuses. ``status`` names the gRPC status code it maps to."""

    status = "PERMISSION_DENIED"


class TokenRejected(EnrollmentError):
    """The enrollment token is unknown, used or expired: the caller is not authenticated."""

    status = "UNAUTHENTICATED"


class CertificateRejected(EnrollmentError):
    """The certificate presented for a renewal does not authenticate its caller."""

    status = "UNAUTHENTICATED"


class PolicyRejected(EnrollmentError):
    """Authenticated, but asking for more than it may (another kind, other names)."""

    status = "PERMISSION_DENIED"


class RateLimited(EnrollmentError):
    status = "RESOURCE_EXHAUSTED"


class BadRequest(EnrollmentError):
    status = "INVALID_ARGUMENT"


@dataclass(frozen=True)
class Policy:
    """What a CA service replica allows. Every replica should run with the same policy."""

    max_days: int = DEFAULT_MAX_DAYS
    # At most ``rate_count`` certificates per NAME within ``rate_window`` (enrollments and renewals).
    rate_count: int = 10
    rate_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class CreatedToken:
    """A new token: ``secret`` is shown once and stored nowhere (only its hash is)."""

    secret: str
    row: TokenRow


@dataclass(frozen=True)
class Issued:
    """What the service hands back: everything a workload writes to its directory, but its key."""

    name: str
    kind: str
    serial: str
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_before: datetime
    not_after: datetime


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.strip().encode()).hexdigest()


def store_for(pki: Pki) -> EnrollmentStore:
    return SqlEnrollmentStore(pki.inventory)


def token_sans(
    *, dns: Sequence[str] = (), ip: Sequence[str] = (), uri: Sequence[str] = (), spiffe_id: Sequence[str] = ()
) -> list[San]:
    """Validate the names a token allows, as ``issue`` validates them."""
    sans = [San("dns", validate_dns_name(v)) for v in dns]
    sans += [San("ip", validate_ip(v)) for v in ip]
    sans += [San("uri", validate_uri(v)) for v in uri]
    sans += [San("uri", validate_spiffe_id(v)) for v in spiffe_id]
    return sans


def create_token(
    pki: Pki, name: str, kind: str, *, sans: Sequence[San] = (), ttl: timedelta = DEFAULT_TOKEN_TTL,
    days: int | None = None, replace: bool = False, created_by: str | None = None, now: datetime | None = None,
) -> CreatedToken:
    """Authorize one enrollment of NAME as a ``kind`` certificate with ``sans``, until ``now + ttl``.

    The names are checked now (syntax, the CA's name constraints, NAME free unless ``replace``),
    so an operator hears about a bad token when creating it, not when a workload first boots.
    """
    role = Role(kind)
    validate_cert_name(name)
    if ttl <= timedelta(0):
        raise GrpcpkiError("a token's lifetime must be positive", "give --ttl like 15m, 1h or 1d")
    # Key-free checks only: creating a token never needs the CA key (the CA's name constraints
    # are checked when the certificate is signed).
    plan_issue(pki, role, name, sans=sans, name_as_san=_name_as_san(role, sans), replace=replace)
    now = now or datetime.now(UTC)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(secret)
    row = TokenRow(
        token_hash=digest, token_id=digest[:12], name=name, kind=role.value, sans=tuple(str(s) for s in sans),
        days=days, replace=replace, created_at=now, created_by=created_by or _operator(), expires_at=now + ttl,
    )
    with pki.transaction():
        store_for(pki).add_token(row)
    return CreatedToken(secret, row)


def revoke_token(
    pki: Pki, token: str, *, by: str | None = None, now: datetime | None = None
) -> tuple[TokenRow, bool]:
    """Withdraw an unused token, by its id (``token list``) or the secret itself: (the row as it
    is now, whether this call revoked it).

    One conditional UPDATE decides, under the writer lock: a token is spent or revoked, never
    both, whichever replica or operator comes first. Revoking a revoked token changes nothing
    and says so; a used one cannot be revoked (revoke its certificate instead).
    """
    now = now or datetime.now(UTC)
    store = store_for(pki)
    text = token.strip()
    with pki.transaction():
        row = store.get_token(token_hash(text)) if text.startswith(TOKEN_PREFIX) else store.find_token(text.lower())
        if row is None:
            raise GrpcpkiError(
                f"no enrollment token with id {text[:40]!r}" if not text.startswith(TOKEN_PREFIX)
                else "no enrollment token matches that secret",
                "see `grpcpki token list` for the ids (12 hex digits)",
            )
        if row.used_at is not None:
            raise GrpcpkiError(
                f"token {row.token_id} was already used on {row.used_at:%Y-%m-%d %H:%M}Z (serial {row.used_serial})",
                f"revoke the certificate it enrolled instead: `grpcpki revoke {row.used_serial}`",
            )
        changed = row.revoked_at is None
        if changed and not store.revoke_token(row.token_hash, now=now, by=by or _operator()):
            raise GrpcpkiError(f"token {row.token_id} changed while this command ran", "run it again")
        updated = store.get_token(row.token_hash)
    assert updated is not None
    return updated, changed


def enroll(
    pki: Pki, *, token: str, csr_pem: bytes, kind: str = "", policy: Policy = Policy(), replica: str = "",
    peer: str = "", store: EnrollmentStore | None = None, now: datetime | None = None,
) -> Issued:
    """Issue NAME's certificate for the CSR's key, spending ``token`` (one-time, unexpired)."""
    now = now or datetime.now(UTC)
    store = store or store_for(pki)
    digest = token_hash(token)
    row = store.get_token(digest)
    _check_token(row, now)
    assert row is not None
    role = Role(row.kind)
    if kind and kind != row.kind:
        raise PolicyRejected(
            f"this enrollment token is for a {row.kind} certificate, not a {kind} one",
            f"ask the operator for a token made with `grpcpki token create {row.name} --kind {kind}`",
        )
    csr = _read_csr(csr_pem)
    allowed = [parse_san(s) for s in row.sans]
    _check_csr_names(csr, leaf_sans(row.name, allowed, name_as_san=_name_as_san(role, allowed)), what="the token allows")
    days = min(row.days or policy.max_days, policy.max_days)
    with pki.transaction() as tx:
        # Again under the lock: a concurrent request may have spent it since (its caller gets the
        # token's reason, not "NAME exists"). spend_token below is the guard that holds across machines.
        _check_token(store.get_token(digest), now)
        _check_rate(store, row.name, policy, now)
        # A server certificate gets clientAuth too: the workload authenticates to Renew with it, and
        # TLS stacks accept a client certificate only with that usage (RFC 5280 4.2.1.12; BoringSSL
        # and OpenSSL check it). Renewals keep it (plan_issue keeps an extra usage on --replace).
        plan = plan_issue(pki, role, row.name, sans=allowed, name_as_san=_name_as_san(role, allowed),
                          replace=row.replace, also_client=role is Role.SERVER)
        record = sign_csr(pki, plan, csr, days=days, now=now)
        if not store.spend_token(digest, now=now, serial=record.serial, via=replica):
            # Another replica spent it (or an operator revoked it) between our read and this
            # write: the database decided. Say which, from the row as it is now.
            _check_token(store.get_token(digest), now)
            raise TokenRejected("this enrollment token was already used", "ask the operator for a new token")
        _audit(store, "enroll", record, f"token:{row.token_id}", replica, peer, now)
        chain = _staged_chain(tx, record)
    return _issued(pki, record, chain)


def renew_presented(
    pki: Pki, *, presented_pem: bytes, csr_pem: bytes, policy: Policy = Policy(), replica: str = "",
    peer: str = "", store: EnrollmentStore | None = None, now: datetime | None = None,
) -> Issued:
    """Renew the identity of ``presented_pem`` (the caller's mTLS certificate) for the CSR's key."""
    now = now or datetime.now(UTC)
    store = store or store_for(pki)
    current = authenticate_presented(pki, presented_pem, now=now)
    role = Role(current.kind)
    csr = _read_csr(csr_pem)
    _check_csr_names(csr, [parse_san(s) for s in current.sans], what="the current certificate has")
    plan = plan_issue(pki, role, current.name, replace=True)
    if plan.replaces is None or plan.replaces.id != current.id:
        raise CertificateRejected(
            f"certificate serial {current.serial} is no longer the active certificate of {current.name!r}",
            "present the newest certificate; if it was lost, enroll again with a new token",
        )
    lifetime_days = max(1, round((current.not_after - current.not_before) / timedelta(days=1)))
    days = min(lifetime_days, policy.max_days)
    with pki.transaction() as tx:
        _check_rate(store, current.name, policy, now)
        record = sign_csr(pki, plan, csr, days=days, now=now)
        _audit(store, "renew", record, f"certificate:{current.serial}", replica, peer, now)
        chain = _staged_chain(tx, record)
    return _issued(pki, record, chain)


def authenticate_presented(pki: Pki, presented_pem: bytes, *, now: datetime | None = None) -> Record:
    """The inventory row of a certificate presented over mTLS, if it may renew; else CertificateRejected."""
    now = now or datetime.now(UTC)
    if not presented_pem:
        raise CertificateRejected(
            "no client certificate was presented: Renew authenticates the caller by its current certificate",
            "call Renew on the CA service's mTLS address (`ca-server --listen`, not --enroll-listen) "
            "with the workload's certificate and key",
        )
    try:
        cert = x509.load_pem_x509_certificate(presented_pem)
    except ValueError:
        raise CertificateRejected("the presented client certificate cannot be read", None) from None
    serial = f"{cert.serial_number:x}"
    record = pki.inventory.by_serial(serial)
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    if record is None or record.fingerprint.replace(":", "").lower() != fingerprint:
        # The fingerprint, not only the serial: a foreign CA may mint any serial it likes.
        raise CertificateRejected(
            "the presented certificate was not issued by this CA",
            "enroll with a token from this CA's operator (`grpcpki token create`)",
        )
    if record.status == "revoked":
        raise CertificateRejected(
            f"certificate {record.name!r} (serial {record.serial}) is revoked and cannot be renewed",
            "enroll again with a new token from the operator",
        )
    if now >= record.not_after:
        raise CertificateRejected(
            f"certificate {record.name!r} expired on {record.not_after:%Y-%m-%d %H:%M}Z and cannot be renewed",
            "enroll again with a new token (renew before two thirds of the lifetime: `grpcpki renew --daemon`)",
        )
    if record.status != "active":
        raise CertificateRejected(
            f"certificate serial {record.serial} of {record.name!r} is {record.status}: only the newest renews",
            "present the newest certificate; if it was lost, enroll again with a new token",
        )
    return record


def trust_bundle(pki: Pki) -> tuple[bytes, bytes]:
    """(every CA certificate to trust, the certificate of the CA that signs new leaves).

    Certificates only, no CA key: a replica whose token is unreachable still answers."""
    bundle = pki.read_store_file(pki.trust_bundle_path, "trust bundle")
    ca_dir = pki.ca_dir()
    issuing = ca_dir / "intermediate.crt"
    if not pki.store_file_exists(issuing):
        issuing = ca_dir / "root.crt"
    return bundle, pki.read_store_file(issuing, "CA certificate")


def _check_token(row: TokenRow | None, now: datetime) -> None:
    if row is None:
        raise TokenRejected("unknown enrollment token", "check it was copied whole; tokens start with "
                            f"{TOKEN_PREFIX!r} (`grpcpki token create` prints one)")
    if row.used_at is not None:
        raise TokenRejected(
            f"this enrollment token (id {row.token_id}, for {row.name!r}) was already used on "
            f"{row.used_at:%Y-%m-%d %H:%M}Z", "tokens are one-time: ask the operator for a new one",
        )
    if row.revoked_at is not None:
        raise TokenRejected(
            f"this enrollment token (id {row.token_id}, for {row.name!r}) was revoked on "
            f"{row.revoked_at:%Y-%m-%d %H:%M}Z", "ask the operator for a new one",
        )
    if now >= row.expires_at:
        raise TokenRejected(
            f"this enrollment token (id {row.token_id}, for {row.name!r}) expired on {row.expires_at:%Y-%m-%d %H:%M}Z",
            "ask the operator for a new one (`grpcpki token create ... --ttl`)",
        )


def _read_csr(csr_pem: bytes) -> CsrInfo:
    try:
        return read_csr(csr_pem, source="the CSR")
    except GrpcpkiError as exc:
        raise BadRequest(exc.message, exc.hint) from None


def _check_csr_names(csr: CsrInfo, allowed: Sequence[San], *, what: str) -> None:
    # The certificate gets exactly the allowed names; a CSR may propose fewer, never others.
    permitted = {str(s) for s in allowed}
    extra = [str(s) for s in csr.sans if str(s) not in permitted]
    if extra:
        raise PolicyRejected(
            f"the CSR asks for {', '.join(extra)}, which {what} not",
            f"allowed: {', '.join(sorted(permitted)) or 'no names'}; make a CSR without the others",
        )


def _name_as_san(role: Role, sans: Sequence[San]) -> bool:
    # As `issue` and `sign`: a server NAME is a SAN; a client NAME only when no identity is given.
    return role is Role.SERVER or not sans


def _check_rate(store: EnrollmentStore, name: str, policy: Policy, now: datetime) -> None:
    recent = store.issued_since(name, now - policy.rate_window)
    if recent >= policy.rate_count:
        raise RateLimited(
            f"{name!r} was issued {recent} certificates in the last {_words(policy.rate_window)} "
            f"(limit {policy.rate_count})",
            "wait and retry; a workload that renews this often is misconfigured (see `grpcpki renew --daemon`)",
        )


def _audit(
    store: EnrollmentStore, action: str, record: Record, actor: str, replica: str, peer: str, now: datetime
) -> None:
    store.add_audit(AuditRow(now, action, record.name, record.kind, record.serial, record.sans, actor, replica, peer))


def _staged_chain(tx: StoreTransaction, record: Record) -> bytes:
    """The chain.pem this transaction writes for ``record``, as staged: read back from disk after
    the commit, it could already be the chain of a concurrent renewal of the same NAME."""
    assert record.chain_path is not None
    chain = tx.pending(record.chain_path)
    assert chain is not None, "sign_csr stages the chain in the caller's transaction"
    return chain


def _issued(pki: Pki, record: Record, chain: bytes) -> Issued:
    bundle, _issuing = trust_bundle(pki)
    return Issued(record.name, record.kind, record.serial, chain, bundle, record.not_before, record.not_after)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _words(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


__all__ = [
    "DEFAULT_MAX_DAYS", "TOKEN_PREFIX", "BadRequest", "CertificateRejected", "CreatedToken", "EnrollmentError",
    "Issued", "Policy", "PolicyRejected", "RateLimited", "TokenRejected", "authenticate_presented", "create_token",
    "enroll", "renew_presented", "revoke_token", "token_hash", "token_sans", "trust_bundle",
]
