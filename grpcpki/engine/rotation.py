"""Rotation without downtime: leaf renewal and CA rotation in resumable, idempotent phases.

Leaf renewal reissues a certificate with the same name, SANs and usages and replaces its
files atomically (``Pki.store_leaf``), so a server or client that re-reads its files picks
the new one up on its next handshake.

CA rotation runs in phases recorded in the inventory's meta table (key ``rotation``)::

    idle --begin--> overlap --finish--> idle

* ``begin`` creates generation N+1 (``ca/gN+1/``), the trust bundle holding the old and new
  roots, the CRL, the rows, and flips issuance to N+1, all in one store transaction
  (journal.py): after a crash the rotation has either not begun or fully begun.
* ``overlap`` lasts until every peer has the new bundle and every leaf is renewed
  (``grpcpki renew --all`` renews leaves of the old generation even if not near expiry).
* ``finish`` rewrites the bundle without the old root, archives the old CA rows and the cross
  certificate, and clears the phase, again in one transaction.

The phases ``preparing`` and ``finishing`` were written by grpcpki versions that ran these steps
one by one; ``begin`` and ``finish`` still complete them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from grpcpki.engine import profiles
from grpcpki.engine.certs import CA, CertInfo, Leaf, cert_file_info, cert_info, info_from_certificate, load_certificates
from grpcpki.engine.errors import GrpcpkiError, NotFoundError, PassphraseError, RotationError
from grpcpki.engine.inventory import NewRecord, Record
from grpcpki.engine.keys import KeyType, PrivateKey, is_encrypted_pem, public_key_bytes
from grpcpki.engine.pki import (
    KEY_URI_SUFFIX,
    LeafFacts,
    LeafRequest,
    Pki,
    ca_key_entry,
    destroy_token_keys,
    generate_token_keys,
)
from grpcpki.engine.profiles import Role
# The renewal rule lives on its own, free of cryptography and SQLAlchemy: `grpcpki apply`'s
# no-op path applies it to plain inventory rows (grpcpki/engine/applyplan.py).
from grpcpki.engine.renewal_rules import due_reason, renew_after, renewal_due
from grpcpki.engine.revocation import CrlSummary, crl_path, refresh_crl_if_due, write_crl
from grpcpki.engine.storage import PUBLIC_FILE_MODE, read_file

ROTATION_META = "rotation"
IDLE, PREPARING, OVERLAP, FINISHING = "idle", "preparing", "overlap", "finishing"
FULL, INTERMEDIATE_ONLY = "full", "intermediate-only"
LEAF_KINDS = ("server", "client")
_GENERATION_SUFFIX = re.compile(r"\s+G\d+$")
_GENERATION_LABEL = re.compile(r"-g\d+(-\d+)?$")
_MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name


# == leaf renewal ================================================================================
@dataclass(frozen=True)
class RenewDecision:
    record: Record
    due: bool
    reason: str


@dataclass(frozen=True)
class RenewResult:
    """What ``renew`` did for one certificate (``action``: renewed, would-renew, skipped, failed)."""

    name: str
    kind: str
    action: str
    reason: str
    old_serial: str
    new_serial: str | None
    not_after: datetime
    record: Record | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "old_serial": self.old_serial,
            "new_serial": self.new_serial,
            "not_after": self.not_after,
        }


def plan_renewals(
    pki: Pki,
    names: Sequence[str] = (),
    *,
    within: timedelta | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> list[RenewDecision]:
    """Which active leaves (all, or those named) to renew. Unknown names raise NotFoundError.

    A certificate signed from a CSR is never renewed here (grpcpki has no key to certify again
    and must not make one behind its owner's back): named, it is an error saying what to do;
    with --all it is skipped with that reason.
    """
    records = [pki.find(name) for name in dict.fromkeys(names)] if names else pki.records()
    if names:
        for record in records:
            if needs_new_csr(record):
                raise RotationError(f"{record.name!r} {CSR_RENEWAL_REASON}", csr_renewal_hint(record))
    generation = pki.generation
    moment = now or datetime.now(UTC)
    decisions = []
    for record in records:
        if needs_new_csr(record):
            _due, reason = renewal_due(record, current_generation=generation, within=within, now=moment)
            decisions.append(RenewDecision(record, False, f"{CSR_RENEWAL_REASON} ({csr_renewal_hint(record)}); {reason}"))
            continue
        # The words for "not due" (two dates formatted, ~4 us) only where they are kept: not under --force.
        due_why = due_reason(record, current_generation=generation, within=within, now=moment)
        if due_why is not None:
            decisions.append(RenewDecision(record, True, due_why))
        elif force:
            decisions.append(RenewDecision(record, True, "forced"))
        else:
            decisions.append(RenewDecision(record, *renewal_due(record, current_generation=generation, within=within,
                                                                now=moment)))
    return decisions


CSR_RENEWAL_REASON = "was signed from a CSR, so renewing it needs a new CSR from whoever holds its key"


def needs_new_csr(record: Record) -> bool:
    """A leaf signed from a CSR: the inventory has no key for it."""
    return record.is_leaf and not record.has_key


def csr_renewal_hint(record: Record) -> str:
    return f"`grpcpki sign NEW.csr --kind {record.kind} --name {record.name} --replace`"


def renew_leaf(
    pki: Pki, record: Record, *, rekey: bool = True, days: int | None = None, now: datetime | None = None
) -> Record:
    """Reissue ``record`` from the current CA with the same name, SANs and usages; returns the new row.

    The old files go to archive/NAME/SERIAL/ and the old row becomes ``superseded`` in the same
    step as the new files land (Pki.store_leaf).
    """
    return pki.store_leaf(renewal_leaf(pki, record, rekey=rekey, days=days, now=now), replaces=record)


def renewal_leaf(
    pki: Pki, record: Record, *, rekey: bool = True, days: int | None = None, now: datetime | None = None,
    ca: CA | None = None,
) -> Leaf:
    """The signed successor of ``record`` (same name, SANs and usages), not yet stored; ``ca``
    is ``pki.signing_ca()``, passed in by a batch that already holds it."""
    if needs_new_csr(record):
        raise RotationError(f"{record.name!r} {CSR_RENEWAL_REASON}", csr_renewal_hint(record))
    role = Role(record.kind)
    key_pem = None
    if not rekey:
        if record.key_path is None or not record.key_path.is_file():
            raise NotFoundError(
                f"the private key of {record.name!r} is missing, so --keep-key cannot reuse it",
                f"renew with a new key: `grpcpki renew {record.name} --rekey`",
            )
        key_pem = read_file(record.key_path, "private key")
    return (ca or pki.signing_ca()).issue(
        role,
        record.name,
        # The stored SANs already include NAME where it was one, so NAME is not added again
        # (it may have been left out on purpose with --no-name-san).
        sans=record.sans,
        name_as_san=False,
        days=days or lifetime_days(record),
        key_type=_key_type(record.key_type),
        key_pem=key_pem,
        also_client=role is Role.SERVER and "clientAuth" in record.eku,
        also_server=role is Role.CLIENT and "serverAuth" in record.eku,
        now=now,
    )


def renew(
    pki: Pki,
    names: Sequence[str] = (),
    *,
    within: timedelta | None = None,
    force: bool = False,
    rekey: bool = True,
    dry_run: bool = False,
    days: int | None = None,
    now: datetime | None = None,
    on_result: Callable[[RenewResult], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    jobs: int | None = None,
) -> list[RenewResult]:
    """Renew every due leaf (or those named). One certificate's failure does not stop the others.

    ``jobs``: worker processes that sign and stage a big pass (engine/workers.py; None: one per
    CPU, 1: all in this process). New keys only: ``rekey=False`` reads each old key here.

    Errors that would fail every certificate (wrong passphrase, expired CA) are raised before
    anything is written. The renewals that succeed land together, in one store transaction:
    ``on_plan`` is told how many are due once the pass is planned (under the lock), ``on_result``
    reports each certificate as it is signed (for a progress bar); its files are in place when
    ``renew`` returns, and the list it returns is the final word.
    """
    if dry_run:
        # A dry run writes nothing, so it neither takes the lock nor waits for it.
        return _renew_all(pki, names, within=within, force=force, rekey=rekey, dry_run=True, days=days, now=now,
                          on_result=on_result, on_plan=on_plan, jobs=jobs)
    # One store transaction for the whole pass: planned under the lock (a certificate revoked a
    # moment ago is not renewed back to life), one journal, one sync, one commit.
    with pki.transaction():
        results = _renew_all(pki, names, within=within, force=force, rekey=rekey, dry_run=False, days=days,
                             now=now, on_result=on_result, on_plan=on_plan, jobs=jobs)
        refresh_crl_if_due(pki, now=now)
    return results


def _renew_all(
    pki: Pki, names: Sequence[str], *, within: timedelta | None, force: bool, rekey: bool, dry_run: bool,
    days: int | None, now: datetime | None, on_result: Callable[[RenewResult], None] | None,
    on_plan: Callable[[int], None] | None = None, jobs: int | None = None,
) -> list[RenewResult]:
    decisions = plan_renewals(pki, names, within=within, force=force, now=now)
    due = sum(1 for d in decisions if d.due)
    # Unlocked and checked once, up front (and not looked up again per certificate).
    ca = pki.signing_ca() if not dry_run and due else None
    workers = pki.pool_workers(due, jobs) if ca is not None and rekey else 0
    if on_plan is not None:
        on_plan(due)
    if workers:
        return _renew_pooled(pki, decisions, workers=workers, days=days, now=now, on_result=on_result)
    results: list[RenewResult] = []
    # Signed one by one (a certificate that cannot be signed fails alone), stored together:
    # one batch of files in the journal and three statements for all the rows (Pki.store_leaves).
    signed: list[tuple[int, Leaf]] = []
    for decision in decisions:
        record = decision.record
        if not decision.due or dry_run:
            action = "would-renew" if decision.due else "skipped"
            result = RenewResult(record.name, record.kind, action, decision.reason, record.serial, None, record.not_after)
        else:
            try:
                leaf = renewal_leaf(pki, record, rekey=rekey, days=days, now=now, ca=ca)
            except PassphraseError:
                raise
            except GrpcpkiError as exc:
                result = RenewResult(record.name, record.kind, "failed", str(exc), record.serial, None, record.not_after)
            else:
                signed.append((len(results), leaf))
                # Provisional until stored below (what renew returns is the truth): for progress bars.
                result = RenewResult(record.name, record.kind, "renewed", decision.reason, record.serial,
                                     leaf.info.serial_hex, leaf.info.not_after)
        results.append(result)
        if on_result is not None:
            on_result(result)
    if signed:
        refused: dict[int, GrpcpkiError] = {}
        stored = pki.store_leaves(
            [leaf for _index, leaf in signed], [decisions[index].record for index, _leaf in signed],
            on_refused=lambda position, error: refused.__setitem__(position, error),
        )
        for position, ((index, _leaf), new) in enumerate(zip(signed, stored, strict=True)):
            old = results[index]
            if new is None:
                results[index] = RenewResult(old.name, old.kind, "failed", str(refused[position]), old.old_serial, None,
                                             decisions[index].record.not_after)
            else:
                results[index] = RenewResult(old.name, old.kind, "renewed", old.reason, old.old_serial, new.serial,
                                             new.not_after, new)
    return results


def _renew_pooled(
    pki: Pki, decisions: Sequence[RenewDecision], *, workers: int, days: int | None, now: datetime | None,
    on_result: Callable[[RenewResult], None] | None,
) -> list[RenewResult]:
    """_renew_all's signing and staging in worker processes (Pki.store_pooled): same results."""
    results: list[RenewResult] = []
    requests: list[LeafRequest] = []
    olds: list[Record] = []
    positions: list[int] = []  # requests[i] is results[positions[i]]
    for decision in decisions:
        record = decision.record
        if decision.due:
            role = Role(record.kind)
            positions.append(len(results))
            olds.append(record)
            requests.append(LeafRequest(
                role, record.name, record.sans, days or lifetime_days(record), _key_type(record.key_type),
                also_client=role is Role.SERVER and "clientAuth" in record.eku,
                also_server=role is Role.CLIENT and "serverAuth" in record.eku,
                # The stored SANs already include NAME where it was one (renewal_leaf).
                name_as_san=False,
            ))
            results.append(RenewResult(record.name, record.kind, "renewed", decision.reason, record.serial, None,
                                       record.not_after))
        else:
            result = RenewResult(record.name, record.kind, "skipped", decision.reason, record.serial, None,
                                 record.not_after)
            results.append(result)
            if on_result is not None:
                on_result(result)

    def failed(index: int, error: GrpcpkiError) -> None:
        old = results[positions[index]]
        results[positions[index]] = RenewResult(old.name, old.kind, "failed", str(error), old.old_serial, None,
                                                old.not_after)
        if on_result is not None:
            on_result(results[positions[index]])

    def signed(index: int, info: LeafFacts) -> None:
        if on_result is not None:
            old = results[positions[index]]
            # Provisional until stored (what renew returns is the truth): for progress bars.
            on_result(RenewResult(old.name, old.kind, "renewed", old.reason, old.old_serial, info.serial_hex,
                                  info.not_after))

    stored = pki.store_pooled(requests, olds, workers=workers, now=now, on_refused=failed, on_signed=signed)
    for index, new in enumerate(stored):
        if new is not None:
            old = results[positions[index]]
            results[positions[index]] = RenewResult(old.name, old.kind, "renewed", old.reason, old.old_serial,
                                                    new.serial, new.not_after, new)
    return results


def lifetime_days(record: Record) -> int:
    """The validity the certificate was issued with, in days (notBefore is backdated by BACKDATE)."""
    seconds = (record.not_after - record.not_before - profiles.BACKDATE).total_seconds()
    return max(1, round(seconds / 86400))


def _key_type(name: str) -> KeyType:
    try:
        return KeyType(name)
    except ValueError:
        return KeyType.ECDSA_P256  # a key type grpcpki would not generate: renew to the default


# == CA rotation: state ==========================================================================
@dataclass(frozen=True)
class RotationState:
    """The ``rotation`` meta record."""

    phase: str = IDLE
    from_generation: int | None = None
    to_generation: int | None = None
    mode: str = FULL
    cross_sign: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"phase": self.phase, "from": self.from_generation, "to": self.to_generation,
             "mode": self.mode, "cross_sign": self.cross_sign},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> RotationState:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(data["phase"], data["from"], data["to"], data.get("mode", FULL), bool(data.get("cross_sign")))
        except (ValueError, KeyError, TypeError):
            raise RotationError(
                f"the inventory's rotation record is unreadable: {text!r}",
                "inspect inventory.db (table meta, key 'rotation') or restore it from backup",
            ) from None


def rotation_state(pki: Pki) -> RotationState:
    return RotationState.from_json(pki.inventory.get_meta(ROTATION_META))


def _save_state(pki: Pki, state: RotationState) -> None:
    pki.inventory.set_meta(ROTATION_META, None if state.phase == IDLE else state.to_json())


@dataclass(frozen=True)
class RotationStatus:
    """What ``grpcpki ca rotate status`` shows."""

    phase: str
    generation: int
    from_generation: int | None
    to_generation: int | None
    mode: str | None
    cross_sign: bool
    bundle: tuple[CertInfo, ...]
    old_leaves: tuple[Record, ...]
    safe_to_finish: bool
    next_step: str

    def to_dict(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "generation": self.generation,
            "from_generation": self.from_generation,
            "to_generation": self.to_generation,
            "mode": self.mode,
            "cross_sign": self.cross_sign,
            "trust_bundle": [
                {"subject": c.subject, "serial": c.serial_hex, "fingerprint_sha256": c.fingerprint_sha256,
                 "not_after": c.not_after}
                for c in self.bundle
            ],
            "old_leaves": [
                {"name": r.name, "kind": r.kind, "serial": r.serial, "ca_generation": r.ca_generation,
                 "not_after": r.not_after}
                for r in self.old_leaves
            ],
            "safe_to_finish": self.safe_to_finish,
            "next_step": self.next_step,
        }


def old_generation_leaves(pki: Pki) -> list[Record]:
    """Active leaves issued by a CA generation other than the current one."""
    current = pki.generation
    return [r for r in pki.records() if (r.ca_generation or 1) != current]


def rotation_status(pki: Pki) -> RotationStatus:
    state = rotation_state(pki)
    old = tuple(old_generation_leaves(pki)) if state.phase != IDLE else ()
    bundle = tuple(pki.trust_anchors())
    safe = state.phase in (OVERLAP, FINISHING) and not old
    return RotationStatus(
        phase=state.phase,
        generation=pki.generation,
        from_generation=state.from_generation,
        to_generation=state.to_generation,
        mode=state.mode if state.phase != IDLE else None,
        cross_sign=state.cross_sign,
        bundle=bundle,
        old_leaves=old,
        safe_to_finish=safe,
        next_step=_next_step(state, old),
    )


def _next_step(state: RotationState, old: Sequence[Record]) -> str:
    if state.phase == IDLE:
        return "no rotation in progress; start one with `grpcpki ca rotate begin`"
    if state.phase == PREPARING:
        return "`ca rotate begin` was interrupted: rerun `grpcpki ca rotate begin` to complete it"
    if state.phase == FINISHING:
        return "`ca rotate finish` was interrupted: rerun `grpcpki ca rotate finish` to complete it"
    if old:
        return (
            f"make every peer reload ca.crt, then `grpcpki renew --all` "
            f"({len(old)} certificate(s) still chain to the old CA)"
        )
    return "once every peer has reloaded ca.crt and its renewed certificate, run `grpcpki ca rotate finish`"


# == CA rotation: begin ==========================================================================
@dataclass(frozen=True)
class BeginResult:
    action: str  # "started" | "resumed" | "already-in-progress"
    root: CertInfo
    intermediate: CertInfo | None
    cross: CertInfo | None
    crl: CrlSummary | None
    status: RotationStatus

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "root": _ca_dict(self.root),
            "intermediate": _ca_dict(self.intermediate) if self.intermediate else None,
            "cross": _ca_dict(self.cross) if self.cross else None,
            "crl": self.crl.to_dict() if self.crl else None,
            "status": self.status.to_dict(),
        }


def begin_rotation(
    pki: Pki, *, intermediate_only: bool = False, cross_sign: bool = False, now: datetime | None = None,
    key_uri: str | None = None,
) -> BeginResult:
    """Create CA generation N+1 and trust it beside generation N; new issuance uses N+1.

    One store transaction: after a crash the rotation either has not begun or is complete.
    Re-running while a rotation is in its overlap does nothing and says so.
    ``key_uri`` (a PKCS#11 URI) generates the new CA key(s) on a token (engine/hsm.py): the new
    root's (the new intermediate's with ``intermediate_only``), plus ``-intermediate`` for the
    new intermediate of a full rotation. If the transaction fails they are deleted again.
    """
    token_keys: list[PrivateKey] = []
    try:
        with pki.transaction():
            state = rotation_state(pki)
            if state.phase in (OVERLAP, FINISHING):
                action = "already-in-progress"
                crl = None
            else:
                action, crl = _begin(
                    pki, state, intermediate_only=intermediate_only, cross_sign=cross_sign, now=now,
                    key_uri=key_uri, token_keys=token_keys,
                )
    except BaseException:
        destroy_token_keys(token_keys)  # nothing refers to them: the transaction did not commit
        raise
    return _begin_result(pki, rotation_state(pki), action, crl)


def _begin(
    pki: Pki, state: RotationState, *, intermediate_only: bool, cross_sign: bool, now: datetime | None,
    key_uri: str | None = None, token_keys: list[PrivateKey] | None = None,
) -> tuple[str, CrlSummary | None]:
    """Everything ``begin`` changes, staged in the caller's store transaction: the files of
    generation N+1, the two-root bundle, the CRL, the rows and the flip land together."""
    if state.phase == PREPARING:
        action = "resumed"  # recorded by a grpcpki from before the store journal
    else:
        _check_begin_options(pki, intermediate_only=intermediate_only, cross_sign=cross_sign, key_uri=key_uri)
        current = pki.generation
        state = RotationState(PREPARING, current, current + 1, INTERMEDIATE_ONLY if intermediate_only else FULL, cross_sign)
        action = "started"
    assert state.from_generation is not None and state.to_generation is not None
    _ensure_generation(pki, state, now, key_uri, token_keys)
    if state.cross_sign:
        _ensure_cross(pki, state, now)
    _write_bundle(pki, (state.from_generation, state.to_generation))
    crl = None
    if crl_path(pki.path).is_file():
        # For the new generation too: a peer checking CRLs needs one from the issuer of every
        # leaf it may meet from now on.
        crl = write_crl(pki, now=now, include_generations=(state.to_generation,))
    _record_generation(pki, state)
    pki.inventory.set_meta("ca_generation", str(state.to_generation))
    _save_state(pki, RotationState(OVERLAP, state.from_generation, state.to_generation, state.mode, state.cross_sign))
    return action, crl


def _begin_result(pki: Pki, state: RotationState, action: str, crl: CrlSummary | None) -> BeginResult:
    assert state.to_generation is not None
    directory = pki.ca_dir(state.to_generation)
    inter = directory / "intermediate.crt"
    cross = directory / "cross.crt"
    return BeginResult(
        action=action,
        root=cert_file_info(directory / "root.crt"),
        intermediate=cert_file_info(inter) if inter.is_file() else None,
        cross=cert_file_info(cross) if cross.is_file() else None,
        crl=crl,
        status=rotation_status(pki),
    )


def _check_begin_options(pki: Pki, *, intermediate_only: bool, cross_sign: bool, key_uri: str | None = None) -> None:
    issuing_key = _issuing_key_path(pki, pki.generation)
    if key_uri is None and issuing_key.name.endswith(KEY_URI_SUFFIX):
        # A rotation must not quietly move the CA key off the token into a file.
        from grpcpki.engine.hsm import Pkcs11Uri, first_free

        # --key-uri names the new root's key (the new intermediate's with --intermediate-only).
        named = pki.ca_key_file(pki.ca_dir(), "root")
        if intermediate_only or not named.name.endswith(KEY_URI_SUFFIX):
            named = issuing_key
        current = Pkcs11Uri.parse(read_file(named, "CA key URI").decode().strip())
        label = _GENERATION_LABEL.sub("", current.object) + f"-g{pki.generation + 1}"
        suggestion = first_free(
            Pkcs11Uri(token=current.token, object=label, serial=current.serial, module_path=current.module_path),
            pki.token_login,
        )
        raise RotationError(
            f"the current CA key is on the PKCS#11 token {current.token!r}, so the new one must be too",
            f"pass --key-uri: grpcpki ca rotate begin{' --intermediate-only' if intermediate_only else ''}"
            f"{' --cross-sign' if cross_sign else ''} --key-uri '{suggestion}'",
        )
    if key_uri is not None:
        from grpcpki.engine.hsm import Pkcs11Uri

        Pkcs11Uri.parse(key_uri)  # a malformed URI fails before anything is made
    if intermediate_only and not pki.uses_intermediate:
        raise RotationError(
            "--intermediate-only needs a PKI with an intermediate CA, and this one signs with its root",
            "rotate the root with `grpcpki ca rotate begin` (no --intermediate-only)",
        )
    if intermediate_only and cross_sign:
        raise RotationError(
            "--cross-sign has no effect with --intermediate-only: the root, and so the trust bundle, stay the same",
            "drop --cross-sign",
        )
    if cross_sign:
        old_root = cert_file_info(pki.ca_dir() / "root.crt")
        # CAs the old root would have below it: the cross-signed root, plus the intermediate.
        needed = 2 if pki.uses_intermediate else 1
        if old_root.path_len is not None and old_root.path_len < needed:
            raise RotationError(
                f"--cross-sign needs the old root to allow {needed} CA(s) below it, but its pathLenConstraint is "
                f"{old_root.path_len} (RFC 5280 4.2.1.9: peers would reject the chain with 'path length "
                "constraint exceeded')",
                "rotate without --cross-sign and keep the overlap until every peer has the new ca.crt "
                "(a root made with `init-ca --path-len 2` can cross-sign)",
            )


def _ensure_generation(
    pki: Pki, state: RotationState, now: datetime | None, key_uri: str | None = None,
    token_keys: list[PrivateKey] | None = None,
) -> None:
    """Write ca/gN+1/ unless a complete, consistent copy is already there (from an interrupted run).

    Regenerating an incomplete directory is safe: nothing trusts it until the bundle is written,
    and the bundle is written only after this directory is complete.
    """
    assert state.from_generation is not None and state.to_generation is not None
    if _generation_complete(pki, state):
        return
    directory = pki.ca_dir(state.to_generation)
    tx = pki.current_transaction()
    old_root_path = pki.ca_dir(state.from_generation) / "root.crt"
    old_root = cert_file_info(old_root_path)
    # New keys are encrypted exactly when the old ones were, with the same passphrase (a key
    # on a token needs none).
    passphrase = pki.passphrase_value() if _keys_encrypted(pki, state.from_generation) and not key_uri else None
    if _keys_encrypted(pki, state.from_generation) and not key_uri and not passphrase:
        raise PassphraseError(
            "the CA keys are encrypted, so the new generation's keys must be too, and no passphrase was given",
            "set GRPCPKI_PASSPHRASE or pass --passphrase-file",
        )
    if passphrase:
        # Prove the passphrase opens the current keys before encrypting new ones with it: a
        # mistyped one would otherwise leave the PKI with keys under two different passphrases.
        pki.load_ca(state.from_generation)
    old_issuing_path = pki.ca_dir(state.from_generation) / "intermediate.crt"
    new_keys: list[PrivateKey] = []
    if key_uri:
        new_keys = generate_token_keys(
            key_uri, _key_type(old_root.key_type), pki.token_login,
            with_intermediate=state.mode == FULL and pki.uses_intermediate,
        )
        if token_keys is not None:
            token_keys.extend(new_keys)  # for the caller to delete if the transaction fails
    if state.mode == FULL:
        root = CA.create(
            _generation_name(old_root.common_name or "grpcpki CA", state.to_generation),
            org=_org(old_root_path), key_type=_key_type(old_root.key_type),
            days=_ca_days(old_root), path_len=old_root.path_len, constraints=old_root.name_constraints, now=now,
            key=new_keys.pop(0) if new_keys else None,
        )
        key_name, key_data, key_mode = ca_key_entry("root", root, passphrase)
        tx.write(directory / key_name, key_data, key_mode)
        tx.write(directory / "root.crt", root.cert_pem, PUBLIC_FILE_MODE)
    else:
        root = _load_root(pki, state.from_generation)
        # The same root; its key stays where it is (found again by _root_key_path).
        tx.write(directory / "root.crt", read_file(old_root_path, "root CA certificate"), PUBLIC_FILE_MODE)
    if pki.uses_intermediate:
        old_issuing = cert_file_info(old_issuing_path) if old_issuing_path.is_file() else None
        base = old_issuing.common_name if old_issuing and old_issuing.common_name else f"{old_root.common_name} Issuing CA"
        days_left = (root.info.not_after - (now or datetime.now(UTC))).days
        issuing = root.create_intermediate(
            _generation_name(base, state.to_generation), org=_org(old_root_path),
            days=max(1, min(profiles.DEFAULT_INTERMEDIATE_DAYS, days_left)), now=now,
            key=new_keys.pop(0) if new_keys else None,
        )
        key_name, key_data, key_mode = ca_key_entry("intermediate", issuing, passphrase)
        tx.write(directory / key_name, key_data, key_mode)
        tx.write(directory / "intermediate.crt", issuing.cert_pem, PUBLIC_FILE_MODE)


def _generation_complete(pki: Pki, state: RotationState) -> bool:
    assert state.from_generation is not None and state.to_generation is not None
    directory = pki.ca_dir(state.to_generation)
    needed = [directory / "root.crt"] + ([pki.ca_key_file(directory, "root")] if state.mode == FULL else [])
    if pki.uses_intermediate:
        needed += [directory / "intermediate.crt", pki.ca_key_file(directory, "intermediate")]
    if not all(path.is_file() for path in needed):
        return False
    try:
        new_root = cert_file_info(directory / "root.crt")
        old_root = cert_file_info(pki.ca_dir(state.from_generation) / "root.crt")
        same_root = new_root.fingerprint_sha256 == old_root.fingerprint_sha256
        if same_root != (state.mode == INTERMEDIATE_ONLY):
            return False
        issuing = pki.load_ca(state.to_generation)  # checks the key pair (and the intermediate's key)
        if state.mode == FULL and pki.uses_intermediate:
            pki.load_ca(state.to_generation, issuing=False)
        if pki.uses_intermediate:
            issuing.certificate.verify_directly_issued_by(load_certificates(read_file(directory / "root.crt"))[0])
    except PassphraseError:
        raise
    except (GrpcpkiError, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - InvalidSignature and friends: the files do not belong together
        return False
    return True


def _ensure_cross(pki: Pki, state: RotationState, now: datetime | None) -> None:
    """ca/gN+1/cross.crt: the new root's subject and key, certified by the old root.

    The root is cross-signed (not the intermediate) and the cross certificate goes last in
    chain.pem, as Let's Encrypt did with ISRG Root X1: OpenSSL and BoringSSL do not backtrack
    between two untrusted issuers with the same name, but with 'trusted first' they stop at
    the new root when the peer has it, and follow the cross certificate to the old root when not.
    """
    assert state.from_generation is not None and state.to_generation is not None
    path = pki.ca_dir(state.to_generation) / "cross.crt"
    new_root = pki.load_ca(state.to_generation, issuing=False)
    old_root_cert = load_certificates(read_file(pki.ca_dir(state.from_generation) / "root.crt"))[0]
    if pki.store_file_exists(path):
        try:
            cross = load_certificates(pki.read_store_file(path))[0]
            cross.verify_directly_issued_by(old_root_cert)
            same_key = public_key_bytes(cross.public_key()) == public_key_bytes(new_root.certificate.public_key())  # type: ignore[arg-type]
            if same_key and cross.subject == new_root.certificate.subject:
                return
        except Exception:  # noqa: BLE001 - a damaged or foreign file is simply made again
            pass
    old_root = _load_root(pki, state.from_generation)
    pki.current_transaction().write(path, old_root.cross_sign(new_root, now=now), PUBLIC_FILE_MODE)


def _record_generation(pki: Pki, state: RotationState) -> None:
    """Inventory rows for the new CA certificates (skipped if an earlier run added them)."""
    assert state.to_generation is not None
    directory = pki.ca_dir(state.to_generation)
    rows: list[tuple[str, Path, Path | None]] = []
    if state.mode == FULL:
        rows.append(("root", directory / "root.crt", pki.ca_key_file(directory, "root")))
    if pki.store_file_exists(directory / "intermediate.crt"):
        rows.append(("intermediate", directory / "intermediate.crt", pki.ca_key_file(directory, "intermediate")))
    if pki.store_file_exists(directory / "cross.crt"):
        rows.append(("cross", directory / "cross.crt", None))
    for kind, cert_path, key_path in rows:
        info = cert_info(pki.read_store_file(cert_path, "CA certificate"))
        if pki.inventory.by_serial(info.serial_hex) is not None:
            continue
        name = info.common_name or info.subject
        pki.inventory.add(
            NewRecord(
                serial=info.serial_hex, kind=kind, name=f"{name} (cross-signed)" if kind == "cross" else name,
                subject=info.subject, sans=[], issuer=info.issuer, not_before=info.not_before,
                not_after=info.not_after, fingerprint=info.fingerprint_sha256, key_type=info.key_type,
                ca_generation=state.to_generation, cert_path=cert_path, key_path=key_path,
            )
        )


# == CA rotation: finish =========================================================================
@dataclass(frozen=True)
class FinishResult:
    action: str  # "finished" | "resumed" | "nothing-to-do"
    dropped: tuple[CertInfo, ...]  # roots no longer in the trust bundle
    stranded: tuple[Record, ...]  # active leaves of the old CA left behind by --force
    crl: CrlSummary | None
    status: RotationStatus

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "dropped_roots": [_ca_dict(c) for c in self.dropped],
            "stranded": [{"name": r.name, "kind": r.kind, "serial": r.serial} for r in self.stranded],
            "crl": self.crl.to_dict() if self.crl else None,
            "status": self.status.to_dict(),
        }


def finish_rotation(pki: Pki, *, force: bool = False, now: datetime | None = None) -> FinishResult:
    """Drop the old CA from the trust bundle and archive it; refuses while leaves still chain to it."""
    with pki.transaction():
        state = rotation_state(pki)
        if state.phase == IDLE:
            return FinishResult("nothing-to-do", (), (), None, rotation_status(pki))
        if state.phase == PREPARING:
            raise RotationError(
                "`ca rotate begin` was interrupted before it completed, so there is nothing to finish yet",
                "rerun `grpcpki ca rotate begin` to complete it",
            )
        assert state.from_generation is not None and state.to_generation is not None
        stranded = tuple(old_generation_leaves(pki))
        # FINISHING was recorded by a grpcpki from before the store journal: the decision was made.
        action = "resumed" if state.phase == FINISHING else "finished"
        if state.phase == OVERLAP and stranded and not force:
            names = ", ".join(r.name for r in stranded[:5]) + (", ..." if len(stranded) > 5 else "")
            raise RotationError(
                f"{len(stranded)} active certificate(s) still chain to the old CA (generation "
                f"{state.from_generation}): {names}",
                "renew them with `grpcpki renew --all`, or pass --force to leave them untrusted",
            )
        before = pki.trust_anchors()
        _write_bundle(pki, (state.to_generation,))
        kept = {c.fingerprint_sha256 for c in pki.trust_anchors()}
        dropped = tuple(c for c in before if c.fingerprint_sha256 not in kept)
        cross_archive = _archive_cross(pki, state.to_generation)
        crl = write_crl(pki, now=now) if crl_path(pki.path).is_file() else None
        for record in pki.ca_records():
            if record.status != "active":
                continue
            if record.kind == "cross" and cross_archive is not None and record.ca_generation == state.to_generation:
                pki.inventory.set_status(record.id, "archived", paths=(cross_archive, None, None))
            elif (record.ca_generation or 1) < state.to_generation and (
                state.mode == FULL or record.kind == "intermediate"
            ):
                pki.inventory.set_status(record.id, "archived")
        _save_state(pki, RotationState())
    return FinishResult(action, dropped, stranded, crl, rotation_status(pki))


def _archive_cross(pki: Pki, generation: int) -> Path | None:
    """Move ca/gN/cross.crt to archive/ca/gN/ so new chains stop carrying it (Pki.cross_chain_pem)."""
    source = pki.ca_dir(generation) / "cross.crt"
    target = pki.path / "archive" / "ca" / f"g{generation}" / "cross.crt"
    if source.is_file():
        tx = pki.current_transaction()
        tx.link(source, target)
        tx.remove(source)
        return target
    return target if target.is_file() else None


# == CA rotation: abort ==========================================================================
@dataclass(frozen=True)
class AbortResult:
    action: str  # "aborted" | "nothing-to-do"
    restored_generation: int
    dropped: tuple[CertInfo, ...]  # roots taken out of the trust bundle
    reissued: tuple[Record, ...]  # leaves of the abandoned CA, reissued by the previous one
    archive: Path | None  # where the abandoned generation's files went
    crl: CrlSummary | None
    status: RotationStatus

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "restored_generation": self.restored_generation,
            "dropped_roots": [_ca_dict(c) for c in self.dropped],
            "reissued": [{"name": r.name, "kind": r.kind, "serial": r.serial, "not_after": r.not_after}
                         for r in self.reissued],
            "archive": str(self.archive) if self.archive else None,
            "crl": self.crl.to_dict() if self.crl else None,
            "status": self.status.to_dict(),
        }


def abort_rotation(pki: Pki, *, reissue: bool = False, now: datetime | None = None) -> AbortResult:
    """Undo ``begin`` during the overlap: ca.crt trusts only the previous CA again, and it issues again.

    Leaves the new CA already issued (``renew --all`` during the overlap) would stop being
    trusted once its root leaves ca.crt, so they are never stranded silently: without
    ``reissue`` this refuses and names them; with it they are reissued by the previous CA, same
    names, usages and keys (a server that reloads its certificate and key at different moments
    never pairs a certificate with the wrong key), in the same store transaction. The abandoned
    generation's files are kept in archive/ca/gN-aborted-STAMP/, and its rows are archived.
    """
    with pki.transaction() as tx:
        state = rotation_state(pki)
        if state.phase == IDLE:
            return AbortResult("nothing-to-do", pki.generation, (), (), None, None, rotation_status(pki))
        if state.phase == FINISHING:
            raise RotationError(
                "`ca rotate finish` has already begun dropping the old CA, so the rotation can no longer be aborted",
                "rerun `grpcpki ca rotate finish` to complete it",
            )
        assert state.from_generation is not None and state.to_generation is not None
        old, new = state.from_generation, state.to_generation
        on_new = [r for r in pki.records() if (r.ca_generation or 1) == new]
        if on_new and not reissue:
            names = ", ".join(f"{r.kind} {r.name}" for r in on_new[:5]) + (", ..." if len(on_new) > 5 else "")
            raise RotationError(
                f"{len(on_new)} active certificate(s) were already issued by the new CA (generation {new}) and "
                f"would stop being trusted: {names}",
                "rerun with --reissue to reissue them from the previous CA (their peers must reload them), "
                "or keep the rotation and `grpcpki ca rotate finish` it",
            )
        keyless = [r for r in on_new if r.key_path is None]
        if keyless:
            raise RotationError(
                f"{', '.join(r.name for r in keyless)} was signed from a CSR by the new CA; grpcpki cannot reissue it",
                f"revoke it (`grpcpki revoke {keyless[0].name}`) and sign a new CSR after the abort, or finish the rotation",
            )
        before = pki.trust_anchors()
        # The previous CA issues again from here on (Pki.signing_ca follows the generation).
        pki.inventory.set_meta("ca_generation", str(old))
        reissued = tuple(renew_leaf(pki, record, rekey=False, now=now) for record in on_new)
        _write_bundle(pki, (old,))
        kept = {c.fingerprint_sha256 for c in pki.trust_anchors()}
        dropped = tuple(c for c in before if c.fingerprint_sha256 not in kept)
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        archive = pki.path / "archive" / "ca" / f"g{new}-aborted-{stamp}"
        # Out of ca/gN so a later `begin` makes a fresh generation N rather than reviving this one.
        moved: dict[Path, Path] = {}
        directory = pki.ca_dir(new)
        for source in sorted(directory.iterdir()) if directory.is_dir() else []:
            if source.is_file():
                tx.link(source, archive / source.name)
                tx.remove(source)
                moved[source] = archive / source.name
        for record in pki.ca_records():
            if record.status == "active" and record.ca_generation == new:
                pki.inventory.set_status(
                    record.id, "archived",
                    paths=(moved.get(record.cert_path) if record.cert_path else None, None,
                           moved.get(record.key_path) if record.key_path else None),
                )
        crl = write_crl(pki, now=now) if crl_path(pki.path).is_file() else None
        _save_state(pki, RotationState())
    return AbortResult("aborted", old, dropped, reissued, archive if moved else None, crl, rotation_status(pki))


# == shared helpers ==============================================================================
def trust_bundle_pem(pki: Pki, generations: Iterable[int]) -> bytes:
    """The roots of ``generations``, oldest first, each once (generations may share a root)."""
    seen: set[str] = set()
    blobs = []
    for generation in sorted(set(generations)):
        data = pki.read_store_file(pki.ca_dir(generation) / "root.crt", "root CA certificate")
        cert = load_certificates(data)[0]
        fingerprint = info_from_certificate(cert).fingerprint_sha256
        if fingerprint not in seen:
            seen.add(fingerprint)
            blobs.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(blobs)


def _write_bundle(pki: Pki, generations: Iterable[int]) -> None:
    data = trust_bundle_pem(pki, generations)
    if pki.trust_bundle_path.is_file() and pki.trust_bundle_path.read_bytes() == data:
        return  # unchanged: do not disturb the mtime that hot-reloading peers watch
    pki.current_transaction().write(pki.trust_bundle_path, data, PUBLIC_FILE_MODE)


def _root_key_path(pki: Pki, generation: int) -> Path:
    """Where generation's root key lives: its own directory, or an earlier one when the
    generation came from an --intermediate-only rotation and shares the root."""
    fingerprint = cert_file_info(pki.ca_dir(generation) / "root.crt").fingerprint_sha256
    for candidate in range(generation, 0, -1):
        directory = pki.ca_dir(candidate)
        key_path = pki.ca_key_file(directory, "root")
        if key_path.is_file() and (directory / "root.crt").is_file():
            if cert_file_info(directory / "root.crt").fingerprint_sha256 == fingerprint:
                return key_path
    raise NotFoundError(
        f"the root CA key of generation {generation} is not in {pki.path / 'ca'}",
        "restore root.key from your offline backup into the generation directory",
    )


def _keys_encrypted(pki: Pki, generation: int) -> bool:
    """Were generation's CA keys written encrypted? The issuing key decides, so a root key kept
    offline (removed from ca/gN/) does not block a full rotation. A key on a token is not."""
    key_path = _issuing_key_path(pki, generation)
    return not key_path.name.endswith(KEY_URI_SUFFIX) and is_encrypted_pem(read_file(key_path, "CA key"))


def _issuing_key_path(pki: Pki, generation: int) -> Path:
    issuing_key = pki.ca_key_file(pki.ca_dir(generation), "intermediate")
    return issuing_key if issuing_key.is_file() else _root_key_path(pki, generation)


def _load_root(pki: Pki, generation: int) -> CA:
    key_path = _root_key_path(pki, generation)
    return pki.load_ca(int(key_path.parent.name.removeprefix("g")), issuing=False)


def _generation_name(common_name: str, generation: int) -> str:
    """'Example CA' -> 'Example CA G2': the same name, told apart by generation."""
    suffix = f" G{generation}"
    base = _GENERATION_SUFFIX.sub("", common_name)
    return base[: _MAX_COMMON_NAME - len(suffix)] + suffix


def _org(cert_path: Path) -> str | None:
    cert = load_certificates(read_file(cert_path, "CA certificate"))[0]
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def _ca_days(info: CertInfo) -> int:
    return max(1, round((info.not_after - info.not_before - profiles.BACKDATE).total_seconds() / 86400))


def _ca_dict(info: CertInfo) -> dict[str, object]:
    return {"subject": info.subject, "serial": info.serial_hex, "not_after": info.not_after,
            "fingerprint_sha256": info.fingerprint_sha256}


__all__ = [
    "needs_new_csr",
    "AbortResult",
    "abort_rotation",
    "BeginResult",
    "FinishResult",
    "RenewDecision",
    "RenewResult",
    "RotationState",
    "RotationStatus",
    "begin_rotation",
    "due_reason",
    "finish_rotation",
    "lifetime_days",
    "old_generation_leaves",
    "plan_renewals",
    "renew",
    "renew_after",
    "renew_leaf",
    "renewal_due",
    "rotation_state",
    "rotation_status",
    "trust_bundle_pem",
]
