"""Quoting MySQL/MariaDB identifiers (database, table, column, variable names) for SQL text.

Every name that goes into a statement we build goes through `quote_ident()`: it is wrapped in
backticks with any backtick inside doubled, which the server reads back as the exact name,
whatever characters it holds (spaces, dots, quotes, non-ASCII). Values never go this way: they
are passed as query parameters or as literals the server encodes itself.
"""
from __future__ import annotations

from restore.errors import RestoreError


class BadIdentifier(RestoreError, ValueError):
    """A name no MySQL/MariaDB server accepts as an identifier (empty, or holding a NUL)."""


def quote_ident(name: str) -> str:
    """`name` as a quoted identifier: quote_ident("a`b") == "`a``b`".

    An empty name or one holding NUL (U+0000) is refused, since the server refuses both and
    quoting them would only move the error to a less clear place."""
    if not isinstance(name, str):
        raise TypeError(f"an identifier must be a str, got {type(name).__name__}")
    if not name:
        raise BadIdentifier("cannot quote an empty name: MySQL/MariaDB identifiers are never empty",
                            hint="report this: the name came from a binlog, a dump or a server and was lost on the way")
    if "\0" in name:
        raise BadIdentifier(f"cannot quote the name {name!r}: MySQL/MariaDB identifiers cannot hold NUL (U+0000)",
                            hint="report this with the binlog position or dump line the name came from")
    return "`" + name.replace("`", "``") + "`"


def quote_qualified(*parts: str) -> str:
    """`db`.`table` (or any dotted path): each part quoted on its own, joined by dots."""
    if not parts:
        raise TypeError("quote_qualified() needs at least one name")
    return ".".join(quote_ident(part) for part in parts)
