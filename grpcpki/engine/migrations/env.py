"""Alembic environment: grpcpki passes its own open connection (inside its own transaction) as
``config.attributes["connection"]``; the developer's command line gets one from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from grpcpki.engine.schema import metadata, postgresql_options

postgresql_options()  # the PostgreSQL half of the metadata (schema.py says why it is not there at import)

config = context.config
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=metadata,
        # SQLite cannot ALTER most things: Alembic's batch mode copies the table instead.
        render_as_batch=getattr(getattr(conn, "dialect", None), "name", "") == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as own:
        _run(own)
