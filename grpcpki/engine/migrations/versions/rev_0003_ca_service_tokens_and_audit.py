"""The CA service's tables: enrollment_tokens and issuance_audit (engine/enroll_store.py).

The service first created them itself on SQLite (CREATE TABLE IF NOT EXISTS), so an inventory
may already hold them: they are created here only where missing, with the same columns. On
PostgreSQL this is what gives issuance_audit.id its sequence (SQLite's INTEGER PRIMARY KEY is
an alias of the rowid; PostgreSQL's is not).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "enrollment_tokens" not in existing:
        op.create_table(
            "enrollment_tokens",
            sa.Column("token_hash", sa.Text, primary_key=True),
            sa.Column("token_id", sa.Text, nullable=False, unique=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, sa.CheckConstraint("kind IN ('server', 'client')"), nullable=False),
            sa.Column("sans", sa.Text, nullable=False, server_default="[]"),
            sa.Column("days", sa.Integer),
            sa.Column("replace", sa.Integer, nullable=False, server_default="0"),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.Column("created_by", sa.Text, nullable=False),
            sa.Column("expires_at", sa.Text, nullable=False),
            sa.Column("used_at", sa.Text),
            sa.Column("used_serial", sa.Text),
            sa.Column("used_via", sa.Text),
        )
    if "issuance_audit" not in existing:
        op.create_table(
            "issuance_audit",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("at", sa.Text, nullable=False),
            sa.Column("action", sa.Text, sa.CheckConstraint("action IN ('enroll', 'renew')"), nullable=False),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("serial", sa.Text, nullable=False, unique=True),
            sa.Column("sans", sa.Text, nullable=False, server_default="[]"),
            sa.Column("actor", sa.Text, nullable=False),
            sa.Column("replica", sa.Text, nullable=False),
            sa.Column("peer", sa.Text, nullable=False, server_default=""),
        )
        op.create_index("issuance_audit_name_at", "issuance_audit", ["name", "at"])


def downgrade() -> None:
    op.drop_table("issuance_audit")
    op.drop_table("enrollment_tokens")
