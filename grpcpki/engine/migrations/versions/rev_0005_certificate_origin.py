"""Which PKI directory, on which machine, made each certificate row: ``certificates.origin``.

On a shared PostgreSQL inventory several operators' PKI directories write rows, and each keeps
the files of the certificates it made (docs/team.md, "What lives where"). ``doctor --store``
checks files only for the rows its own directory made and names the others' origin instead of
calling their files missing. Rows written before this revision have no origin (NULL); the
embedded SQLite inventory leaves it NULL too, since every row there is its own directory's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only when missing, as 0003 and 0004 do: an inventory stamped from a hand-written schema may
    # have been written by a grpcpki that already had it (tests/day2/test_names_per_kind.py).
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("certificates")}
    if "origin" not in columns:
        # Nullable: a plain ALTER TABLE ADD COLUMN on both backends, no table copy.
        op.add_column("certificates", sa.Column("origin", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("origin")
