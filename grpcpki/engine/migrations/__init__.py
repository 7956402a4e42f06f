"""Alembic environment and revisions of the inventory, run by grpcpki itself (engine/inventory.py
``migrate``): users never need an alembic.ini. A developer adds a revision with

    alembic -c grpcpki/engine/migrations/alembic.ini revision -m "what changes"

then writes its upgrade() by hand against engine/schema.py, and moves schema.HEAD_REVISION to it.
"""
