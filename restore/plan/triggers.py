"""Triggers created in the replayed window, and which tables their bodies may write.

A statement-format binlog logs the statement that fires a trigger, never the trigger's own writes:
the replay repeats them (the trigger is replayed too), but the plan cannot count them, so the tables
a trigger writes must not be predicted exactly. In row format the trigger's rows are logged as row
events of their own and counted like any other.

A body of one statement is analysed (restore.binlog.sql_scope); a compound body (BEGIN ... END)
may write any table of its schema or name others, so every table of the trigger's schema is taken.
"""
from __future__ import annotations

import re

from restore.binlog.sql_scope import StatementInfo, analyze
from restore.plan.plan import TableStats

_BODY = re.compile(r"\bFOR\s+EACH\s+ROW\b(?:\s+(?:FOLLOWS|PRECEDES)\s+\S+)?\s*(?P<body>.*)$", re.I | re.S)
ANY = "*"      # a table name meaning every table of the schema


class Triggers:
    def __init__(self) -> None:
        self._by_name: dict[str, tuple[str, frozenset[str]]] = {}   # db.trigger -> (db.table, tables it writes)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def ddl(self, info: StatementInfo, sql: str) -> None:
        """Follow CREATE/DROP TRIGGER (and DROP TABLE/DATABASE, which drop a table's triggers)."""
        if info.verb == "CREATE TRIGGER" and info.written:
            table = info.written[0]
            name = _trigger_name(sql, table.db)
            self._by_name[name] = (f"{table.db}.{table.name}", _body_writes(sql, table.db))
        elif info.verb == "DROP TRIGGER":
            for ref in info.written:
                self._by_name.pop(f"{ref.db}.{ref.name}", None)
        elif info.verb == "DROP TABLE":
            gone = {f"{t.db}.{t.name}" for t in info.written}
            self._by_name = {k: v for k, v in self._by_name.items() if v[0] not in gone}
        elif info.verb == "DROP DATABASE":
            self._by_name = {k: v for k, v in self._by_name.items() if v[0].split(".", 1)[0] not in info.databases}

    def uncount(self, tables: dict[str, TableStats], table: str) -> None:
        """A statement-format write to `table` fired its triggers: what they write is not counted."""
        for target, trigger in self.written_by(table).items():
            db, name = target.split(".", 1)
            for written in [n for n in tables if n == target or name == ANY and n.split(".", 1)[0] == db]:
                tables[written].exact = False
                tables[written].note = (f"written by trigger {trigger} on {table}: a statement-format binlog does "
                                        "not log a trigger's writes, so its row count cannot be predicted")

    def written_by(self, table: str) -> dict[str, str]:
        """db.table (or db.* for every table of db) -> the trigger on `table` that may write it."""
        out: dict[str, str] = {}
        for name, (on, writes) in self._by_name.items():
            if on == table:
                for target in writes:
                    out.setdefault(target, name)
        return out


def _trigger_name(sql: str, db: str | None) -> str:
    m = re.search(r"\bTRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>(?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)", sql, re.I)
    name = m["name"].replace("`", "") if m else "?"
    return name if "." in name else f"{db}.{name}"


def _body_writes(sql: str, db: str | None) -> frozenset[str]:
    m = _BODY.search(sql)
    body = m["body"].strip().rstrip(";") if m else ""
    if body and not re.match(r"(?:\w+\s*:\s*)?BEGIN\b", body, re.I):
        info = analyze(body, db)
        if info.kind == "dml" and info.written:
            return frozenset(f"{t.db}.{t.name}" for t in info.written if t.db and t.name)
    return frozenset({f"{db}.{ANY}"})
