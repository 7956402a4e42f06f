"""What ``issue --replace`` issues: the names a certificate has, plus those given, minus those removed.

Reissuing must not quietly drop a name a client dials by: a server that loses ``DNS:api`` or
``IP:10.0.0.7`` fails every handshake made to it ("No match found for server name"). So a
replacement keeps every SAN of the certificate it supersedes, and a name goes away only when
asked by name (``remove``). A reissue is of the same kind: names are unique per kind, so
``issue client NAME --replace`` never touches the server certificate NAME still in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from grpcpki.engine import profiles
from grpcpki.engine.certs import leaf_sans
from grpcpki.engine.errors import GrpcpkiError, InvalidNameError, NotFoundError
from grpcpki.engine.inventory import Record
from grpcpki.engine.keys import KeyType
from grpcpki.engine.names import San, dedupe, parse_san
from grpcpki.engine.pki import Pki, validate_cert_name
from grpcpki.engine.profiles import Role


@dataclass(frozen=True)
class SanChange:
    """SANs before and after a reissue, as ``DNS:x`` / ``IP:x`` / ``URI:x`` strings."""

    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(s for s in self.after if s not in self.before)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(s for s in self.before if s not in self.after)

    def to_dict(self) -> dict[str, object]:
        return {"before": list(self.before), "after": list(self.after), "added": list(self.added),
                "removed": list(self.removed)}


@dataclass(frozen=True)
class IssuePlan:
    """The arguments to hand :meth:`Pki.issue`, and what they change."""

    role: Role
    name: str
    sans: tuple[San, ...]
    name_as_san: bool
    also_client: bool
    also_server: bool
    replaces: Record | None
    change: SanChange | None  # None for a new NAME


def plan_issue(
    pki: Pki,
    role: Role,
    name: str,
    *,
    sans: Sequence[str | San] = (),
    name_as_san: bool = True,
    replace: bool = False,
    remove_sans: Iterable[str | San] = (),
    also_client: bool = False,
    also_server: bool = False,
) -> IssuePlan:
    """Work out what to issue for NAME. Key-free, so it runs before the CA is unlocked.

    Without an active NAME this is a plain issue (``remove_sans`` is then an error: there is
    nothing to remove from). With one and ``replace``: its SANs plus ``sans`` minus
    ``remove_sans``; NAME is not added as a SAN again (it is there already, or was left out on
    purpose), and an extra usage it had (``--also-client``) is kept.
    """
    role = Role(role)
    validate_cert_name(name)
    removals = [s if isinstance(s, San) else parse_san(s) for s in remove_sans]
    explicit = [s if isinstance(s, San) else parse_san(s) for s in sans]
    existing = pki.inventory.active_leaf(name, role.value)  # names are unique per kind
    if existing is None or not replace:
        if removals:
            raise GrpcpkiError(
                "--remove-san takes names off an existing certificate",
                "use it with --replace on an active NAME (see `grpcpki list`)" if existing is None and replace
                else "add --replace to reissue the existing certificate without them",
            )
        # The usual checks, including "NAME exists: renew it, or --replace".
        pki.check_can_issue(name, kind=role.value, sans=explicit, name_as_san=name_as_san, replace=replace)
        return IssuePlan(role, name, tuple(explicit), name_as_san, also_client, also_server, existing, None)
    before = tuple(parse_san(s) for s in existing.sans)
    merged = dedupe([*before, *explicit])
    unknown = [s for s in removals if s not in merged]
    if unknown:
        raise InvalidNameError(
            f"{', '.join(map(str, unknown))} is not on {name!r} (it has {', '.join(map(str, merged))})",
            "give --remove-san exactly as `grpcpki inspect` shows it, e.g. DNS:api or IP:10.0.0.7",
        )
    after = tuple(s for s in merged if s not in removals)
    if not after:
        raise InvalidNameError(
            f"removing {', '.join(map(str, removals))} would leave {name!r} with no SAN",
            "keep one name, or add another with --dns/--ip/--uri/--spiffe-id",
        )
    leaf_sans(name, after, name_as_san=False)  # the same validation a new certificate gets
    pki.check_can_issue(name, kind=role.value, sans=after, name_as_san=False, replace=True)
    return IssuePlan(
        role, name, after, False,
        also_client=also_client or (role is Role.SERVER and "clientAuth" in existing.eku),
        also_server=also_server or (role is Role.CLIENT and "serverAuth" in existing.eku),
        replaces=existing,
        change=SanChange(tuple(str(s) for s in before), tuple(str(s) for s in after)),
    )


def issue_planned(
    pki: Pki, plan: IssuePlan, *, days: int = profiles.DEFAULT_LEAF_DAYS, key_type: KeyType = KeyType.ECDSA_P256,
    now: datetime | None = None,
) -> Record:
    """Issue what :func:`plan_issue` worked out, under the PKI lock.

    The plan was made without the lock (before a passphrase prompt); if another command
    reissued or revoked NAME since, the merged names may be stale, so this refuses instead.
    """
    with pki.transaction():
        current = pki.inventory.active_leaf(plan.name, plan.role.value)
        if plan.replaces is not None and (current is None or current.id != plan.replaces.id):
            raise NotFoundError(
                f"{plan.name!r} changed while this command ran (another grpcpki command reissued or revoked it)",
                "run the command again",
            )
        return pki.issue(
            plan.role, plan.name, sans=plan.sans, days=days, key_type=key_type, also_client=plan.also_client,
            also_server=plan.also_server, name_as_san=plan.name_as_san, replace=plan.replaces is not None, now=now,
        )


__all__ = ["IssuePlan", "SanChange", "issue_planned", "plan_issue"]
