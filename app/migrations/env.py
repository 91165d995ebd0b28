"""Alembic environment. Tollgate always passes an open connection (see app.migrate)."""

from __future__ import annotations

from alembic import context

import app.models  # noqa: F401  (registers every table on the metadata)
from app.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by running the alembic CLI by hand
    raise RuntimeError("Run migrations with `tollgate migrate`, which provides the connection.")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
