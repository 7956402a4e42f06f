"""Rows of the CA service: enrollment tokens and the issuance audit trail.

:class:`EnrollmentStore` is the small interface the enrollment engine (engine/enrollment.py)
needs; :class:`SqlEnrollmentStore` implements it with SQLAlchemy Core statements on the tables
of engine/schema.py (``enrollment_tokens``, ``issuance_audit``; Alembic revisions 0003 and 0004),
on the inventory's own connection, so that its rows change in the same database transaction as
the certificate they authorize (``Pki.transaction``): a token is spent if and only if its
certificate was stored, and every certificate the service issued has its audit row.

Concurrency, across machines (CA service replicas on one PostgreSQL inventory, docs/team.md):

- spending a token is one conditional UPDATE (``... WHERE used_at IS NULL AND revoked_at IS NULL
  AND expires_at > now``) whose row count decides: of two replicas presenting the same token, the
  database lets exactly one change the row, whatever else they checked before;
- revoking a token is the same kind of UPDATE (``WHERE used_at IS NULL AND revoked_at IS NULL``),
  so a token is either spent or revoked, never both;
- counting recent issuances for the rate limit runs inside ``Pki.transaction()``, which on a
  shared inventory holds the database's advisory writer lock (engine/lock.py), and the audit row
  that the next count sees commits in that same transaction: count-then-issue is atomic across
  every replica, not only within one machine's file lock.

Only the SHA-256 of a token is stored: a copy of the database (a backup, a replica's disk) does
not hand out enrollments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from grpcpki.engine.inventory import Inventory
from grpcpki.engine.schema import enrollment_tokens, issuance_audit

# Timestamps in these tables are ISO 8601 UTC text with microseconds on both backends (schema.py):
# they sort and compare as text, so "expires_at > now" is a plain string comparison in SQL.
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenRow:
    token_hash: str
    token_id: str
    name: str
    kind: str
    sans: tuple[str, ...]
    days: int | None
    replace: bool
    created_at: datetime
    created_by: str
    expires_at: datetime
    used_at: datetime | None = None
    used_serial: str | None = None
    used_via: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def state(self, now: datetime | None = None) -> str:
        """unused, used, revoked or expired (a used or revoked token stays so after its expiry)."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if (now or datetime.now(UTC)) >= self.expires_at else "unused"

    def to_dict(self, now: datetime | None = None) -> dict[str, object]:
        return {
            "token_id": self.token_id, "name": self.name, "kind": self.kind, "sans": list(self.sans),
            "days": self.days, "replace": self.replace, "state": self.state(now), "created_at": iso(self.created_at),
            "created_by": self.created_by, "expires_at": iso(self.expires_at),
            "used_at": iso(self.used_at) if self.used_at else None, "used_serial": self.used_serial,
            "used_via": self.used_via, "revoked_at": iso(self.revoked_at) if self.revoked_at else None,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    action: str
    name: str
    kind: str
    serial: str
    sans: tuple[str, ...]
    actor: str
    replica: str
    peer: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "at": iso(self.at), "action": self.action, "name": self.name, "kind": self.kind, "serial": self.serial,
            "sans": list(self.sans), "actor": self.actor, "replica": self.replica, "peer": self.peer,
        }


class EnrollmentStore(Protocol):
    """What the enrollment engine reads and writes besides certificates."""

    def add_token(self, token: TokenRow) -> None: ...

    def get_token(self, token_hash: str) -> TokenRow | None: ...

    def spend_token(self, token_hash: str, *, now: datetime, serial: str, via: str) -> bool:
        """Mark the token used; False if it was already used, revoked or has expired (nothing changed)."""
        ...

    def revoke_token(self, token_hash: str, *, now: datetime, by: str) -> bool:
        """Mark an unused token revoked; False if it was used or revoked already (nothing changed)."""
        ...

    def find_token(self, token_id: str) -> TokenRow | None: ...

    def tokens(self) -> list[TokenRow]: ...

    def add_audit(self, row: AuditRow) -> None: ...

    def issued_since(self, name: str, since: datetime) -> int: ...

    def audit(self, name: str | None = None) -> list[AuditRow]: ...


class SqlEnrollmentStore:
    """:class:`EnrollmentStore` on the inventory's database (inside its transactions)."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory

    def add_token(self, token: TokenRow) -> None:
        self._inventory.run(enrollment_tokens.insert().values(
            token_hash=token.token_hash, token_id=token.token_id, name=token.name, kind=token.kind,
            sans=json.dumps(list(token.sans)), days=token.days, replace=int(token.replace),
            created_at=iso(token.created_at), created_by=token.created_by, expires_at=iso(token.expires_at),
        ))

    def get_token(self, token_hash: str) -> TokenRow | None:
        row = self._inventory.run(
            sa.select(enrollment_tokens).where(enrollment_tokens.c.token_hash == token_hash)
        ).first()
        return _token(row) if row is not None else None

    def find_token(self, token_id: str) -> TokenRow | None:
        row = self._inventory.run(
            sa.select(enrollment_tokens).where(enrollment_tokens.c.token_id == token_id)
        ).first()
        return _token(row) if row is not None else None

    def spend_token(self, token_hash: str, *, now: datetime, serial: str, via: str) -> bool:
        t = enrollment_tokens.c
        result = self._inventory.run(
            enrollment_tokens.update()
            .where(t.token_hash == token_hash, t.used_at.is_(None), t.revoked_at.is_(None), t.expires_at > iso(now))
            .values(used_at=iso(now), used_serial=serial, used_via=via)
        )
        return result.rowcount == 1

    def revoke_token(self, token_hash: str, *, now: datetime, by: str) -> bool:
        t = enrollment_tokens.c
        result = self._inventory.run(
            enrollment_tokens.update()
            .where(t.token_hash == token_hash, t.used_at.is_(None), t.revoked_at.is_(None))
            .values(revoked_at=iso(now), revoked_by=by)
        )
        return result.rowcount == 1

    def tokens(self) -> list[TokenRow]:
        rows = self._inventory.run(
            sa.select(enrollment_tokens).order_by(enrollment_tokens.c.created_at, enrollment_tokens.c.token_id)
        ).all()
        return [_token(row) for row in rows]

    def add_audit(self, row: AuditRow) -> None:
        self._inventory.run(issuance_audit.insert().values(
            at=iso(row.at), action=row.action, name=row.name, kind=row.kind, serial=row.serial,
            sans=json.dumps(list(row.sans)), actor=row.actor, replica=row.replica, peer=row.peer,
        ))

    def issued_since(self, name: str, since: datetime) -> int:
        a = issuance_audit.c
        count = self._inventory.run(
            sa.select(sa.func.count()).select_from(issuance_audit).where(a.name == name, a.at >= iso(since))
        ).scalar()
        return int(count or 0)

    def audit(self, name: str | None = None) -> list[AuditRow]:
        statement = sa.select(issuance_audit).order_by(issuance_audit.c.id)
        if name is not None:
            statement = statement.where(issuance_audit.c.name == name)
        return [
            AuditRow(parse_iso(r.at), r.action, r.name, r.kind, r.serial, tuple(json.loads(r.sans)), r.actor,
                     r.replica, r.peer)
            for r in self._inventory.run(statement).all()
        ]


def _token(row: Any) -> TokenRow:
    return TokenRow(
        token_hash=row.token_hash, token_id=row.token_id, name=row.name, kind=row.kind,
        sans=tuple(json.loads(row.sans)), days=row.days, replace=bool(row.replace),
        created_at=parse_iso(row.created_at), created_by=row.created_by, expires_at=parse_iso(row.expires_at),
        used_at=parse_iso(row.used_at) if row.used_at else None, used_serial=row.used_serial, used_via=row.used_via,
        revoked_at=parse_iso(row.revoked_at) if row.revoked_at else None, revoked_by=row.revoked_by,
    )


__all__ = ["AuditRow", "EnrollmentStore", "SqlEnrollmentStore", "TokenRow"]
