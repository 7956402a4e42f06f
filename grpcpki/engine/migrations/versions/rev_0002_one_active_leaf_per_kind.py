"""Names are unique per kind: a server and a client can both be called `orders` (issue 11,
item 9). The hand-written schema 2 (``PRAGMA user_version = 2``) is exactly this revision, so
such an inventory is stamped 0002. Every inventory of 0001 already satisfies the narrower rule.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE_LEAF = "status = 'active' AND kind IN ('server', 'client')"


def upgrade() -> None:
    op.drop_index("certificates_one_active_leaf", table_name="certificates")
    op.create_index(
        "certificates_one_active_leaf_per_kind", "certificates", ["name", "kind"], unique=True,
        sqlite_where=sa.text(_ACTIVE_LEAF), postgresql_where=sa.text(_ACTIVE_LEAF),
    )


def downgrade() -> None:
    op.drop_index("certificates_one_active_leaf_per_kind", table_name="certificates")
    op.create_index(
        "certificates_one_active_leaf", "certificates", ["name"], unique=True,
        sqlite_where=sa.text(_ACTIVE_LEAF), postgresql_where=sa.text(_ACTIVE_LEAF),
    )
