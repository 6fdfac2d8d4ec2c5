"""Which tables the triggers created in a replayed window write (restore.plan.triggers)."""
from __future__ import annotations

from restore.binlog.sql_scope import analyze
from restore.plan.plan import TableStats
from restore.plan.triggers import Triggers


def _follow(triggers: Triggers, sql: str, db: str = "app") -> None:
    triggers.ddl(analyze(sql, db), sql)


def _uncounted(triggers: Triggers, written: str, names: list[str]) -> list[str]:
    tables = {n: TableStats() for n in names}
    triggers.uncount(tables, written)
    return sorted(n for n, t in tables.items() if not t.exact)


def test_a_one_statement_body_uncounts_only_the_table_it_writes():
    t = Triggers()
    _follow(t, "CREATE DEFINER=`root`@`%` TRIGGER audit AFTER INSERT ON orders FOR EACH ROW "
               "INSERT INTO log.entries VALUES (NEW.id)")
    assert _uncounted(t, "app.orders", ["app.orders", "app.items", "log.entries"]) == ["log.entries"]
    assert _uncounted(t, "app.items", ["app.orders", "log.entries"]) == []       # no trigger on items


def test_a_compound_body_uncounts_every_table_of_its_schema():
    t = Triggers()
    _follow(t, "CREATE TRIGGER t2 BEFORE UPDATE ON app.orders FOR EACH ROW BEGIN UPDATE stock SET n = n - 1; END")
    assert _uncounted(t, "app.orders", ["app.orders", "app.stock", "log.entries"]) == ["app.orders", "app.stock"]


def test_dropped_triggers_and_tables_take_their_triggers_with_them():
    t = Triggers()
    _follow(t, "CREATE TRIGGER a AFTER INSERT ON orders FOR EACH ROW INSERT INTO log VALUES (1)")
    _follow(t, "CREATE TRIGGER b AFTER INSERT ON items FOR EACH ROW INSERT INTO log VALUES (2)")
    _follow(t, "DROP TRIGGER IF EXISTS app.a")
    assert _uncounted(t, "app.orders", ["app.log"]) == []
    assert _uncounted(t, "app.items", ["app.log"]) == ["app.log"]
    _follow(t, "DROP TABLE items")
    assert not t
