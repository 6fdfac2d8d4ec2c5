"""Runs the store's migrations on the connection handlers/store.py hands over (config.attributes),
inside the transaction it holds: on SQLite and PostgreSQL a migration killed half-way leaves the
store as it was; on MySQL/MariaDB (DDL commits by itself) every step is written to be run again."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
