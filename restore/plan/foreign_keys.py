"""Foreign keys with cascading actions, read from DDL: what a change to a parent does to its children.

The storage engine executes `ON DELETE CASCADE` / `SET NULL` (and `ON UPDATE ...`) itself and never
logs it: the binlog shows only the parent's rows. So the plan cannot count the children's changes
(their tables are marked inexact), and a DELETE on a parent can empty a child without a single
child row in the binlog (a disaster candidate). Replaying the parent's row events with
foreign_key_checks on makes the target cascade the same way.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ID = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_STR = re.compile(r"'[^'\\]*(?:\\.[^'\\]*)*'|\"[^\"\\]*(?:\\.[^\"\\]*)*\"", re.S)
_COMMENT = re.compile(r"/\*(?![M!])[\s\S]*?\*/|--\s[^\n]*|#[^\n]*")
_VERSIONED = re.compile(r"/\*M?!\d*([\s\S]*?)\*/")
_FK = re.compile(
    r"(?:\bCONSTRAINT(?:\s+(?P<name>" + _ID + r"))?\s+)?\bFOREIGN\s+KEY\s*(?:IF\s+NOT\s+EXISTS\s+)?(?:" + _ID + r"\s*)?"
    r"\((?P<cols>[^()]*)\)\s*REFERENCES\s+(?P<ref>" + _ID + r"(?:\s*\.\s*" + _ID + r")?)\s*\((?P<pcols>[^()]*)\)"
    r"(?P<tail>(?:\s*(?:MATCH\s+(?:FULL|PARTIAL|SIMPLE)|ON\s+(?:DELETE|UPDATE)\s+"
    r"(?:CASCADE|SET\s+NULL|SET\s+DEFAULT|RESTRICT|NO\s+ACTION)))*)", re.I)
_ACTION = re.compile(r"ON\s+(DELETE|UPDATE)\s+(CASCADE|SET\s+NULL|SET\s+DEFAULT|RESTRICT|NO\s+ACTION)", re.I)
_DROP_FK = re.compile(r"\bDROP\s+(?:FOREIGN\s+KEY|CONSTRAINT)\s+(?:IF\s+EXISTS\s+)?(" + _ID + ")", re.I)
ACTS = ("CASCADE", "SET NULL", "SET DEFAULT")   # actions that change the child


def _unquote(ident: str) -> str:
    ident = ident.strip()
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def _split_name(ref: str) -> tuple[str | None, str]:
    parts = re.findall(_ID, ref)
    if len(parts) == 2:
        return _unquote(parts[0]), _unquote(parts[1])
    return None, _unquote(parts[0])


@dataclass(frozen=True)
class ForeignKey:
    child: str            # "db.table"
    parent: str           # "db.table"
    name: str | None
    on_delete: str = "RESTRICT"
    on_update: str = "RESTRICT"


def _clean(sql: str) -> str:
    sql = _VERSIONED.sub(lambda m: " " + m.group(1) + " ", sql)
    sql = _COMMENT.sub(" ", sql)
    return _STR.sub("''", sql)


def parse(sql: str, db: str, table: str) -> list[ForeignKey]:
    """The FOREIGN KEY clauses of a CREATE TABLE / ALTER TABLE ... ADD (or one line of a dump's
    CREATE TABLE) of `db`.`table`."""
    if "REFERENCES" not in sql.upper():
        return []
    out = []
    for m in _FK.finditer(_clean(sql)):
        pdb, ptable = _split_name(m["ref"])
        acts = {k.upper(): re.sub(r"\s+", " ", v.upper()) for k, v in _ACTION.findall(m["tail"] or "")}
        out.append(ForeignKey(f"{db}.{table}", f"{pdb or db}.{ptable}", _unquote(m["name"]) if m["name"] else None,
                              acts.get("DELETE", "RESTRICT"), acts.get("UPDATE", "RESTRICT")))
    return out


def dropped(sql: str) -> list[str]:
    """Constraint names an ALTER TABLE drops (DROP FOREIGN KEY x, DROP CONSTRAINT x)."""
    return [_unquote(m) for m in _DROP_FK.findall(_clean(sql))]


class ForeignKeys:
    """Every known foreign key, by parent. `delete_parents` / `update_parents` are live sets (the
    planner's hot loop keeps them) of tables whose DELETE / UPDATE cascades into a child."""

    def __init__(self, fks: Iterable[ForeignKey] = ()) -> None:
        self.by_child: dict[str, list[ForeignKey]] = {}
        self.delete_parents: set[str] = set()
        self.update_parents: set[str] = set()
        for fk in fks:
            self.add(fk)

    def __bool__(self) -> bool:
        return bool(self.by_child)

    def _refresh(self) -> None:
        dp = {fk.parent for fks in self.by_child.values() for fk in fks if fk.on_delete in ACTS}
        up = {fk.parent for fks in self.by_child.values() for fk in fks if fk.on_update in ACTS}
        self.delete_parents.clear()
        self.delete_parents.update(dp)
        self.update_parents.clear()
        self.update_parents.update(up)

    def add(self, fk: ForeignKey) -> None:
        mine = self.by_child.setdefault(fk.child, [])
        if fk.name is not None:
            mine[:] = [f for f in mine if f.name != fk.name]
        mine.append(fk)
        self._refresh()

    def table_created(self, child: str, fks: list[ForeignKey]) -> None:
        self.by_child.pop(child, None)
        for fk in fks:
            self.by_child.setdefault(child, []).append(fk)
        self._refresh()

    def altered(self, child: str, added: list[ForeignKey], dropped_names: list[str]) -> None:
        if dropped_names and child in self.by_child:
            self.by_child[child] = [f for f in self.by_child[child] if f.name not in dropped_names]
        for fk in added:
            self.add(fk)
        self._refresh()

    def table_dropped(self, name: str) -> None:
        if self.by_child.pop(name, None) is not None:
            self._refresh()

    def database_dropped(self, db: str) -> None:
        for name in [n for n in self.by_child if n.split(".", 1)[0] == db]:
            self.by_child.pop(name)
        self._refresh()

    def renamed(self, old: str, new: str) -> None:
        changed = False
        for child, fks in list(self.by_child.items()):
            fixed = [ForeignKey(new if f.child == old else f.child, new if f.parent == old else f.parent,
                                f.name, f.on_delete, f.on_update) for f in fks]
            if fixed != fks:
                changed = True
                self.by_child[child] = fixed
        if old in self.by_child:
            self.by_child[new] = self.by_child.pop(old)
            changed = True
        if changed:
            self._refresh()

    def reach(self, parent: str, *, deleted: bool, updated: bool) -> dict[str, str]:
        """The tables a DELETE (`deleted`) and/or UPDATE (`updated`) of `parent`'s rows changes through
        cascades, transitively: name -> "deleted" (rows removed by ON DELETE CASCADE) or "updated"
        (SET NULL / SET DEFAULT / ON UPDATE CASCADE). The parent itself is left out."""
        children: dict[str, list[ForeignKey]] = {}
        for fks in self.by_child.values():
            for fk in fks:
                children.setdefault(fk.parent, []).append(fk)
        out: dict[str, str] = {}
        todo = [(parent, deleted, updated)]
        seen: set[tuple[str, bool, bool]] = set()
        while todo:
            name, dele, upd = todo.pop()
            if (name, dele, upd) in seen:
                continue
            seen.add((name, dele, upd))
            for fk in children.get(name, ()):
                if fk.child == parent:
                    continue
                effect = None
                if dele and fk.on_delete == "CASCADE":
                    effect = "deleted"
                elif (dele and fk.on_delete in ACTS) or (upd and fk.on_update in ACTS):
                    effect = "updated"
                if effect is None:
                    continue
                if effect == "deleted" or out.get(fk.child) != "deleted":
                    out[fk.child] = effect
                todo.append((fk.child, effect == "deleted", True))
        return out
