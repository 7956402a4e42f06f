"""Alembic environment and revisions of the inventory, run by grpcpki itself (engine/inventory.py
``migrate``): users never need an alembic.ini. A developer adds a revision with

    alembic -c grpcpki/engine/migrations/alembic.ini revision -m "what changes" --rev-id 0002

(versions/rev_0002_what_changes.py, on top of the current head), writes its upgrade() by hand
with op.create_table / op.add_column (on SQLite, inside op.batch_alter_table for anything ALTER
cannot do), adds the same Table or Column to engine/schema.py, and moves schema.HEAD_REVISION
to it. tests/team/test_inventory_backends.py checks HEAD_REVISION is Alembic's single head;
tests/team/test_shared_inventory.py runs the inventory on SQLite and PostgreSQL.
"""
