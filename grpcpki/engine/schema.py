"""The inventory's tables, as SQLAlchemy Core ``Table`` objects: the one place that says what
the database holds. Every backend gets them through the Alembic revisions in
``grpcpki/engine/migrations/versions/`` (a table added here needs a revision there, and
:data:`HEAD_REVISION` moved to it; tests/team/test_inventory_backends.py checks both agree).

Portable on purpose (SQLite, the embedded default, and PostgreSQL for teams):

- serials are lowercase hex text: a 159-bit serial (RFC 5280 4.1.2.2 allows 20 octets) does not
  fit a BIGINT, and text compares and indexes the same everywhere;
- timestamps are UTC. SQLite keeps the ISO 8601 text it always had (``2026-12-05T10:00:00Z``,
  sortable as text, and parsed far faster than any driver conversion); PostgreSQL gets
  ``timestamptz`` read in a session whose TimeZone is UTC;
- uniqueness is the database's job: a unique serial, and a partial unique index that allows one
  active leaf per name and kind, so two writers on two machines cannot both win.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# The newest Alembic revision: an inventory stamped with it needs no migration, which saves
# importing Alembic (tens of milliseconds) on every command. Move it with every new revision.
HEAD_REVISION = "0005"

KINDS = ("root", "intermediate", "cross", "server", "client")
STATUSES = ("active", "superseded", "revoked", "archived")

# Text on SQLite (ISO 8601 UTC), timestamptz on PostgreSQL.
Timestamp = String().with_variant(DateTime(timezone=True), "postgresql")

metadata = MetaData()

certificates = Table(
    "certificates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("serial", Text, nullable=False, unique=True),  # lowercase hex, no separators
    Column("kind", Text, CheckConstraint("kind IN ('root','intermediate','cross','server','client')"), nullable=False),
    Column("name", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("sans", Text, nullable=False, server_default="[]"),  # JSON list of "DNS:x" / "IP:x" / "URI:x"
    Column("issuer", Text, nullable=False),
    Column("not_before", Timestamp, nullable=False),
    Column("not_after", Timestamp, nullable=False),
    Column("fingerprint", Text, nullable=False),  # SHA-256 of the DER certificate
    Column("key_type", Text, nullable=False),
    Column(
        "status", Text, CheckConstraint("status IN ('active','superseded','revoked','archived')"), nullable=False
    ),
    Column("eku", Text, nullable=False, server_default="[]"),  # JSON list, e.g. ["serverAuth"]
    Column("ca_generation", Integer),  # CA generation that issued it (or is, for CAs)
    Column("cert_path", Text),  # relative to the PKI directory
    Column("chain_path", Text),
    Column("key_path", Text),
    Column("superseded_by", Integer, ForeignKey("certificates.id")),
    Column("revoked_at", Timestamp),
    Column("revocation_reason", Text),
    Column("created_at", Timestamp, nullable=False),
    # "HOST:/path/to/pki" of the PKI directory that made the row, on a shared inventory only
    # (revision 0005): its files live there, and `doctor --store` elsewhere must not call them missing.
    Column("origin", Text),
)

_ACTIVE_LEAF = text("status = 'active' AND kind IN ('server', 'client')")

# `grpcpki issue/renew/inspect NAME` look up the active certificate by name.
Index("certificates_name_status", certificates.c.name, certificates.c.status)
# `grpcpki list --expiring` and renewal scans, in expiry order without a sort.
Index("certificates_status_not_after", certificates.c.status, certificates.c.not_after)
# At most one active leaf per name and kind (revision 0002): a name is how servers and clients
# find their files, and a service may be both a server and a client under one name.
# PostgreSQL's WHERE is added by postgresql_options(), not here: naming any postgresql_* option
# loads SQLAlchemy's PostgreSQL dialect (~25 ms of every command's start-up, issue 10), and a
# command on the embedded SQLite inventory never uses it. The revisions create the index on
# both backends with their own WHERE; this declaration is what Alembic's autogenerate compares.
one_active_leaf_per_kind = Index(
    "certificates_one_active_leaf_per_kind",
    certificates.c.name,
    certificates.c.kind,
    unique=True,
    sqlite_where=_ACTIVE_LEAF,
)


def postgresql_options() -> None:
    """Complete the metadata for PostgreSQL: the partial index's WHERE (called by the Alembic
    environment, before it compares or creates anything)."""
    one_active_leaf_per_kind.dialect_options["postgresql"]["where"] = _ACTIVE_LEAF

# Small shared facts (CA generation, CRL number) and the store's commit markers (journal.py).
meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# The CA service (engine/enroll_store.py, revision 0003): one-time enrollment tokens, stored as
# their SHA-256, and an audit row per certificate the service issued. Timestamps here are ISO
# 8601 UTC text with microseconds (enroll_store.iso) on both backends: they sort as text.
enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),  # SHA-256 hex of the secret; the secret is never stored
    Column("token_id", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, CheckConstraint("kind IN ('server', 'client')"), nullable=False),
    Column("sans", Text, nullable=False, server_default="[]"),
    Column("days", Integer),
    Column("replace", Integer, nullable=False, server_default="0"),
    Column("created_at", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("used_at", Text),
    Column("used_serial", Text),
    Column("used_via", Text),
    # `grpcpki token revoke` (revision 0004): an unused token withdrawn by an operator.
    Column("revoked_at", Text),
    Column("revoked_by", Text),
)

issuance_audit = Table(
    "issuance_audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Text, nullable=False),
    Column("action", Text, CheckConstraint("action IN ('enroll', 'renew')"), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("serial", Text, nullable=False, unique=True),
    Column("sans", Text, nullable=False, server_default="[]"),
    Column("actor", Text, nullable=False),
    Column("replica", Text, nullable=False),
    Column("peer", Text, nullable=False, server_default=""),
)
# The rate limit counts one identity's recent issuances.
Index("issuance_audit_name_at", issuance_audit.c.name, issuance_audit.c.at)

# The newest signed CRL (revision 0004), written in the transaction that signs it
# (engine/revocation.py): a PKI directory on another machine, or a CA service replica whose CA
# cannot sign right now, serves it from here instead of a local crl.pem that may be stale.
# ``number`` is the CRLNumber (RFC 5280 5.2.3) of every CRL in ``crl_pem`` (one per live issuing
# CA, concatenated as in crl.pem); only the newest row is kept.
crls = Table(
    "crls",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("crl_pem", Text, nullable=False),
    Column("this_update", Timestamp, nullable=False),
    Column("next_update", Timestamp, nullable=False),
)

__all__ = [
    "HEAD_REVISION", "KINDS", "STATUSES", "Timestamp", "certificates", "crls", "enrollment_tokens", "issuance_audit",
    "meta", "metadata",
]
