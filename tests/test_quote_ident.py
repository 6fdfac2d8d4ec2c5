"""restore.mysql.quote: the one way names become SQL text.

The fast tests read the quoted text back with the engine's own statement reader (sql_scope), for
any name hypothesis can make; the server test creates and finds back names a hand-written
quoting gets wrong."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restore.binlog.sql_scope import TableRef, analyze
from restore.mysql.quote import BadIdentifier, quote_ident, quote_qualified

# What a server accepts in a name: anything but NUL; MariaDB allows up to 64 characters.
names = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                min_size=1, max_size=64)


def test_backticks_are_doubled_and_the_name_wrapped():
    assert quote_ident("plain") == "`plain`"
    assert quote_ident("a`b") == "`a``b`"
    assert quote_ident("`") == "````"
    assert quote_ident("db.table") == "`db.table`"  # a dot inside a name is part of the name
    assert quote_qualified("my db", "t`1") == "`my db`.`t``1`"


@pytest.mark.parametrize("bad, says", [("", "empty"), ("a\0b", "NUL")])
def test_names_no_server_accepts_are_refused_saying_why(bad, says):
    with pytest.raises(BadIdentifier, match=says) as raised:
        quote_ident(bad)
    assert raised.value.hint and isinstance(raised.value, ValueError)
    with pytest.raises(BadIdentifier):
        quote_qualified("db", bad)


def test_a_name_must_be_text():
    with pytest.raises(TypeError, match="bytes"):
        quote_ident(b"db")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        quote_qualified()


@given(db=names, table=names)
def test_a_quoted_name_reads_back_as_itself(db, table):
    info = analyze(f"DROP TABLE {quote_qualified(db, table)}", None)
    assert info.written == (TableRef(db, table),)
    info = analyze(f"UPDATE {quote_ident(table)} SET x = 1", "default")
    assert info.written == (TableRef("default", table),)


@pytest.mark.mysql
def test_the_server_finds_the_exact_names(target):
    db, table, column = "re`store bot", "t.`1`", "c`"
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"CREATE TABLE {quote_qualified(db, table)} ({quote_ident(column)} INT)")
        cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = %s", (db,))
        assert cur.fetchall() == ((db, table, column),)
