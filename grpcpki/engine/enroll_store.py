"""Rows of the CA service: enrollment tokens and the issuance audit trail.

:class:`EnrollmentStore` is the small interface the enrollment engine (engine/enrollment.py)
needs; :class:`SqlEnrollmentStore` implements it on the inventory's own database connection, so
that its rows change in the same database transaction as the certificate they authorize
(``Pki.transaction``): a token is spent if and only if its certificate was stored, and every
certificate the service issued has its audit row.

Concurrency: spending a token is one conditional UPDATE (``... WHERE used_at IS NULL AND
expires_at > now``): of two replicas presenting the same token, the database lets exactly one
change the row, whatever machine they run on. Counting recent issuances for the rate limit runs
under the PKI's writer lock, inside the transaction that adds the next audit row.

Only the SHA-256 of a token is stored: a copy of the database (a backup, a replica's disk) does
not hand out enrollments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from grpcpki.engine.inventory import Inventory

# Created on first use, next to the inventory's tables. Timestamps are ISO 8601 UTC text, as
# in the certificates table, so that they sort and compare the same on every backend.
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS enrollment_tokens (
        token_hash   TEXT PRIMARY KEY,          -- SHA-256 hex of the secret; the secret is never stored
        token_id     TEXT NOT NULL UNIQUE,      -- first 12 hex digits of the hash, for people and audit rows
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('server', 'client')),
        sans         TEXT NOT NULL DEFAULT '[]',-- JSON list of the SANs the certificate gets ("DNS:x", "URI:x")
        days         INTEGER,                   -- certificate lifetime; NULL: the server's --max-days
        replace      INTEGER NOT NULL DEFAULT 0,-- may supersede an active certificate of NAME
        created_at   TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        expires_at   TEXT NOT NULL,
        used_at      TEXT,
        used_serial  TEXT,
        used_via     TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS issuance_audit (
        id          INTEGER PRIMARY KEY,
        at          TEXT NOT NULL,
        action      TEXT NOT NULL CHECK (action IN ('enroll', 'renew')),
        name        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        serial      TEXT NOT NULL UNIQUE,
        sans        TEXT NOT NULL DEFAULT '[]',
        actor       TEXT NOT NULL,              -- "token:<id>" or "certificate:<serial>"
        replica     TEXT NOT NULL,              -- which ca-server replica signed it
        peer        TEXT NOT NULL DEFAULT ''    -- the caller's address as gRPC saw it
    )
    """,
    # The rate limit counts one identity's recent issuances.
    "CREATE INDEX IF NOT EXISTS issuance_audit_name_at ON issuance_audit(name, at)",
)


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

    def to_dict(self) -> dict[str, object]:
        return {
            "token_id": self.token_id, "name": self.name, "kind": self.kind, "sans": list(self.sans),
            "days": self.days, "replace": self.replace, "created_at": iso(self.created_at),
            "created_by": self.created_by, "expires_at": iso(self.expires_at),
            "used_at": iso(self.used_at) if self.used_at else None, "used_serial": self.used_serial,
            "used_via": self.used_via,
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
        """Mark the token used; False if it was already used or has expired (nothing changed)."""
        ...

    def tokens(self) -> list[TokenRow]: ...

    def add_audit(self, row: AuditRow) -> None: ...

    def issued_since(self, name: str, since: datetime) -> int: ...

    def audit(self, name: str | None = None) -> list[AuditRow]: ...


class SqlEnrollmentStore:
    """:class:`EnrollmentStore` on the inventory's database (inside its transactions)."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        # SQLite runs DDL inside a transaction too: inside one, the tables appear with its commit.
        for statement in SCHEMA:
            inventory.execute(statement)

    def add_token(self, token: TokenRow) -> None:
        self._inventory.execute(
            "INSERT INTO enrollment_tokens (token_hash, token_id, name, kind, sans, days, replace, created_at, "
            "created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (token.token_hash, token.token_id, token.name, token.kind, json.dumps(list(token.sans)), token.days,
             int(token.replace), iso(token.created_at), token.created_by, iso(token.expires_at)),
        )

    def get_token(self, token_hash: str) -> TokenRow | None:
        row = self._inventory.execute(
            "SELECT * FROM enrollment_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return _token(row) if row is not None else None

    def spend_token(self, token_hash: str, *, now: datetime, serial: str, via: str) -> bool:
        cursor = self._inventory.execute(
            "UPDATE enrollment_tokens SET used_at = ?, used_serial = ?, used_via = ? "
            "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            (iso(now), serial, via, token_hash, iso(now)),
        )
        return cursor.rowcount == 1

    def tokens(self) -> list[TokenRow]:
        rows = self._inventory.execute("SELECT * FROM enrollment_tokens ORDER BY created_at").fetchall()
        return [_token(row) for row in rows]

    def add_audit(self, row: AuditRow) -> None:
        self._inventory.execute(
            "INSERT INTO issuance_audit (at, action, name, kind, serial, sans, actor, replica, peer) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(row.at), row.action, row.name, row.kind, row.serial, json.dumps(list(row.sans)), row.actor,
             row.replica, row.peer),
        )

    def issued_since(self, name: str, since: datetime) -> int:
        row = self._inventory.execute(
            "SELECT COUNT(*) FROM issuance_audit WHERE name = ? AND at >= ?", (name, iso(since))
        ).fetchone()
        return int(row[0])

    def audit(self, name: str | None = None) -> list[AuditRow]:
        sql = "SELECT * FROM issuance_audit"
        params: Sequence[object] = ()
        if name is not None:
            sql += " WHERE name = ?"
            params = (name,)
        rows = self._inventory.execute(sql + " ORDER BY id", params).fetchall()
        mapped = [_columns(r) for r in rows]
        return [
            AuditRow(parse_iso(r["at"]), r["action"], r["name"], r["kind"], r["serial"], tuple(json.loads(r["sans"])),
                     r["actor"], r["replica"], r["peer"])
            for r in mapped
        ]


def _columns(row: Any) -> Any:
    # sqlite3.Row reads by column name itself; a SQLAlchemy Row (the inventory moving onto
    # SQLAlchemy Core) through its ``_mapping``.
    return getattr(row, "_mapping", row)


def _token(row: Any) -> TokenRow:
    get = _columns(row).__getitem__
    used_at = get("used_at")
    return TokenRow(
        token_hash=get("token_hash"), token_id=get("token_id"), name=get("name"), kind=get("kind"),
        sans=tuple(json.loads(get("sans"))), days=get("days"), replace=bool(get("replace")),
        created_at=parse_iso(get("created_at")), created_by=get("created_by"),
        expires_at=parse_iso(get("expires_at")), used_at=parse_iso(used_at) if used_at else None,
        used_serial=get("used_serial"), used_via=get("used_via"),
    )


__all__ = ["AuditRow", "EnrollmentStore", "SqlEnrollmentStore", "TokenRow"]
