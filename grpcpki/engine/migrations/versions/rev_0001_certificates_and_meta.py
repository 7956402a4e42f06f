"""The certificates and meta tables: the schema grpcpki's hand-written migrations made as
``PRAGMA user_version = 1``. Such an inventory is stamped with this revision, not re-created
(engine/inventory.py ``migrate``). Written out rather than read from engine/schema.py: a
released revision must build the same tables forever.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    timestamp = sa.String().with_variant(sa.DateTime(timezone=True), "postgresql")
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("serial", sa.Text, nullable=False, unique=True),
        sa.Column(
            "kind", sa.Text, sa.CheckConstraint("kind IN ('root','intermediate','cross','server','client')"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sans", sa.Text, nullable=False, server_default="[]"),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("not_before", timestamp, nullable=False),
        sa.Column("not_after", timestamp, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("key_type", sa.Text, nullable=False),
        sa.Column(
            "status", sa.Text, sa.CheckConstraint("status IN ('active','superseded','revoked','archived')"),
            nullable=False,
        ),
        sa.Column("eku", sa.Text, nullable=False, server_default="[]"),
        sa.Column("ca_generation", sa.Integer),
        sa.Column("cert_path", sa.Text),
        sa.Column("chain_path", sa.Text),
        sa.Column("key_path", sa.Text),
        sa.Column("superseded_by", sa.Integer, sa.ForeignKey("certificates.id")),
        sa.Column("revoked_at", timestamp),
        sa.Column("revocation_reason", sa.Text),
        sa.Column("created_at", timestamp, nullable=False),
    )
    op.create_index("certificates_name_status", "certificates", ["name", "status"])
    op.create_index("certificates_status_not_after", "certificates", ["status", "not_after"])
    active_leaf = sa.text("status = 'active' AND kind IN ('server', 'client')")
    op.create_index(
        "certificates_one_active_leaf", "certificates", ["name"], unique=True,
        sqlite_where=active_leaf, postgresql_where=active_leaf,
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("certificates")
