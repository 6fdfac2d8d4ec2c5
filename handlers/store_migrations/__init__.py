"""Alembic's environment for the shared store; handlers/store.py runs it when a store opens."""
