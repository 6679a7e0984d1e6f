"""Alembic environment: runs on the connection :meth:`Store.open` hands over (no alembic.ini)."""

from alembic import context

from deskside.insights.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
