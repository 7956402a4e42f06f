"""The newest signed CRL in the inventory (table ``crls``, engine/revocation.py), and revoked
enrollment tokens (``enrollment_tokens.revoked_at/revoked_by``, `grpcpki token revoke`).

Until now the CRL lived only in the ``crl.pem`` of the PKI directory that signed it, so on a
shared PostgreSQL inventory another operator's directory, or a CA service replica on another
machine, served a stale one. The next CRL signed after this revision fills the table; until
then readers fall back to their local crl.pem.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only what is missing, as in 0003: an SQLite inventory stamped from the hand-written schema
    # (PRAGMA user_version 1 or 2) may have been made by a grpcpki that already had these.
    inspector = sa.inspect(op.get_bind())
    if "crls" not in inspector.get_table_names():
        # The same portable timestamp as certificates': ISO 8601 text on SQLite, timestamptz on PostgreSQL.
        timestamp = sa.String().with_variant(sa.DateTime(timezone=True), "postgresql")
        op.create_table(
            "crls",
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("crl_pem", sa.Text, nullable=False),
            sa.Column("this_update", timestamp, nullable=False),
            sa.Column("next_update", timestamp, nullable=False),
        )
    columns = {column["name"] for column in inspector.get_columns("enrollment_tokens")}
    # Nullable columns: a plain ALTER TABLE ADD COLUMN on both backends, no table copy.
    for name in ("revoked_at", "revoked_by"):
        if name not in columns:
            op.add_column("enrollment_tokens", sa.Column(name, sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
    op.drop_table("crls")
