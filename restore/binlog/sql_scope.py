"""Classify one binlog QUERY-event statement: its kind, the tables it writes, its renames.

`analyze()` never raises: what it cannot make sense of is kind "other", verb "OTHER", written=() ("cannot tell").
Names are kept as written (no case folding).  Versioned comments /*!NNNNN ... */ and /*M!NNNNNN ... */ are code.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, islice
from operator import eq, ge, gt, le, lt, ne


@dataclass(frozen=True, slots=True)
class TableRef:
    db: str | None      # the qualifier, else the event's default db, else None
    name: str | None    # None for database-level objects (CREATE/DROP/ALTER DATABASE, GRANT ON db.*)


@dataclass(frozen=True, slots=True)
class StatementInfo:
    kind: str           # begin commit rollback savepoint xa dml ddl dcl load other
    verb: str           # normalised leading keywords: "INSERT", "DROP TABLE", ... "OTHER"
    written: tuple[TableRef, ...] = ()
    read: tuple[TableRef, ...] = ()
    temporary: bool = False
    if_exists: bool = False
    has_where: bool = False
    trivial_where: bool = False
    has_limit: bool = False
    renames: tuple[tuple[TableRef, TableRef], ...] = ()
    databases: frozenset[str] = frozenset()   # computed from `written` when left empty
    or_replace: bool = False                  # CREATE OR REPLACE: drops an existing object first

    def __post_init__(self) -> None:
        if not self.databases and self.written:
            object.__setattr__(self, "databases", frozenset(r.db for r in self.written if r.db is not None))


__all__ = ["TableRef", "StatementInfo", "analyze"]
Refs = list[tuple[TableRef, "str | None"]]          # table + alias, in order of appearance

_VERSIONED = re.compile(r"/\*M?!\d*([\s\S]*?)\*/")
_TOKEN = re.compile(r"""    # comments match outside the group (findall yields ""), whitespace never matches
    /\*[\s\S]*?(?:\*/|\Z) | --(?=\s|\Z)[^\n]* | \#[^\n]*
  | ( `[^`]*(?:``[^`]*)*`?
    | (?:_[A-Za-z0-9]+|[nN])?'[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*'?
    | "[^"\\]*(?:(?:\\[\s\S]|"")[^"\\]*)*"? | [xXbB]'[^']*'?
    | (?<![\w$`])(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)? | (?<![\w$.`])\d+[eE][+-]?\d+(?![\w$])
    | [\w$\u0080-\U0010ffff]+ | <=>|<>|!=|<=|>=|:=|\|\||&&|\S )""", re.X)
_NOT_ALIAS = frozenset("""ON USING WHERE SET JOIN INNER CROSS LEFT RIGHT FULL NATURAL STRAIGHT_JOIN OUTER ORDER
    GROUP HAVING LIMIT UNION EXCEPT INTERSECT MINUS PARTITION USE IGNORE FORCE FOR LOCK WINDOW INTO VALUES
    VALUE SELECT RETURNING WITH FROM TO AS LIKE WHEN THEN ELSE END AND OR NOT TABLE DUPLICATE""".split())
_JOINPRE = frozenset("NATURAL INNER CROSS LEFT RIGHT FULL OUTER".split())
_JOIN, _JOINISH = ("JOIN", "STRAIGHT_JOIN"), _JOINPRE | {"JOIN", "STRAIGHT_JOIN"}
_ON_END = _JOINISH | set("WHERE SET ORDER GROUP HAVING LIMIT UNION EXCEPT INTERSECT RETURNING WINDOW FOR LOCK INTO "
                         "DUPLICATE ,".split())             # what ends a join condition
_MARKS, _SUBQ = frozenset(("WHERE", "ORDER", "LIMIT", "RETURNING")), frozenset(("SELECT", "WITH", "VALUES", "("))
_MODS = frozenset("UNIQUE FULLTEXT SPATIAL ONLINE OFFLINE AGGREGATE IGNORE TEMPORARY".split())
_OBJ_ALIAS = {"SCHEMA": "DATABASE", "TABLES": "TABLE", "KEY": "INDEX"}
_DB_OPTS = frozenset("CHARACTER CHARSET DEFAULT COLLATE COMMENT ENCRYPTION READ UPGRADE".split())
_MISC = frozenset("""SELECT USE DO LOCK UNLOCK HANDLER SHOW PREPARE EXECUTE DEALLOCATE KILL INSTALL UNINSTALL
    PURGE RESET CHANGE STOP START CHECKSUM SHUTDOWN BINLOG CACHE DESCRIBE DESC EXPLAIN HELP SIGNAL RESIGNAL
    GET VALUES TABLE BACKUP CALL ( BEGIN""".split())     # BEGIN here is BEGIN NOT ATOMIC, a compound statement
_SIMPLE = {"COMMIT": ("commit", "COMMIT"), "ROLLBACK": ("rollback", "ROLLBACK"), "XA": ("xa", "XA"),
           "SAVEPOINT": ("savepoint", "SAVEPOINT"), "RELEASE": ("savepoint", "RELEASE SAVEPOINT")}
_OTHER = StatementInfo("other", "OTHER")


def _need(ok: bool) -> None:
    if not ok:
        raise ValueError("the statement does not have the shape its leading keywords promise")


def _uniq(refs: Iterable[TableRef]) -> tuple[TableRef, ...]:
    return tuple(dict.fromkeys(refs))


class _P:
    """Token cursor over one statement: raw tokens `t`, upper-cased `u`; k(i) is "" past the end."""
    __slots__ = ("t", "u", "it", "db")

    def __init__(self, sql: str, db: str | None) -> None:
        self.db, self.it = db, (_TOKEN.finditer(sql) if len(sql) > 32768 else None)   # huge: tokenise lazily
        self.t = [] if self.it else list(filter(None, _TOKEN.findall(sql)))
        self.u = [x.upper() for x in self.t]

    def k(self, i: int) -> str:
        try:
            return self.u[i]
        except IndexError:
            while i >= len(self.u) and self.it is not None:       # lazy mode: 1024 more tokens
                batch = [m.group(1) for m in islice(self.it, 1024)]
                self.it = self.it if batch else None
                self.t += (more := [x for x in batch if x])
                self.u += [x.upper() for x in more]
            return self.u[i] if i < len(self.u) else ""

    def skip(self, i: int, words: Iterable[str]) -> int:
        while self.k(i) in words:
            i += 1
        return i

    def ident(self, i: int) -> str | None:
        x = self.t[i] if self.k(i) else "0"
        if x[0] == "`":
            return x[1:-1].replace("``", "`") if len(x) > 1 and x[-1] == "`" else x[1:]
        return x if (x[0].isalnum() or x[0] in "_$" or x[0] >= "\x80") and not x.isdigit() and "." not in x else None

    def qname(self, i: int) -> tuple[str | None, str, int]:
        """[q.]name or [q.]name.* at i -> (qualifier, name, next index); raises ValueError."""
        _need((n := self.ident(i)) is not None)
        if self.k(i + 1) == "." and self.k(i + 2) == "*":
            return None, n, i + 3
        if self.k(i + 1) == "." and (m := self.ident(i + 2)) is not None:
            return n, m, i + 5 if self.k(i + 3) == "." and self.k(i + 4) == "*" else i + 3
        return None, n, i + 1

    def ref(self, i: int, db: str | None = None) -> tuple[TableRef, int]:
        q, n, i = self.qname(i)
        return TableRef(q if q is not None else db if db is not None else self.db, n), i

    def names(self, i: int) -> list[TableRef]:
        out = [(r := self.ref(i))[0]]
        while self.k(r[1]) == ",":
            out.append((r := self.ref(r[1] + 1))[0])
        return out

    def find(self, i: int, words: Iterable[str]) -> int:
        """First of `words` (join words: only before a join) at paren depth 0 from i, else unmatched ")", else end."""
        d = 0
        while k := self.k(i):
            if d == 0 and (k == ")" or k in words and (k not in _JOINPRE or self.k(i + 1) in _JOINISH)):
                return i
            d, i = d + (k == "(") - (k == ")"), i + 1
        return i

    def close(self, i: int) -> int:
        return self.find(i + 1, ()) + 1         # i is at "(": just after the matching ")"

    def mods(self, i: int) -> tuple[int, bool, bool]:
        """Skip CREATE/ALTER/DROP modifiers -> (index, or_replace, temporary)."""
        orr = tmp = False
        while True:
            k, k1 = self.k(i), self.k(i + 1)
            if k == "OR" and k1 == "REPLACE" or k in _MODS:
                orr, tmp, i = orr or k == "OR", tmp or k == "TEMPORARY", i + 1 + (k == "OR")
            elif k in ("DEFINER", "ALGORITHM", "SQL") and k1 in ("=", "SECURITY"):   # DEFINER = u@h | CURRENT_USER()
                i += 5 if k == "DEFINER" and self.k(i + 3) in ("@", "(") else 3
            else:
                return i, orr, tmp

    def ifx(self, i: int) -> tuple[int, bool]:
        k, k1 = self.k(i) == "IF", self.k(i + 1)                     # IF EXISTS / IF NOT EXISTS
        return (i + 2, True) if k and k1 == "EXISTS" else (i + 3 if k and k1 == "NOT" else i, False)

    def alias(self, i: int) -> tuple[str | None, int]:
        if self.k(i) == "AS":
            return (self.ident(i + 1) or self.t[i + 1].strip("'\"")) if self.k(i + 1) else None, i + 2
        a = self.ident(i) if self.k(i) not in _NOT_ALIAS else None
        return (a, i + 1) if a is not None else (None, i)

    def refs(self, i: int, out: Refs, reads: list[TableRef]) -> int:
        """Parse a table reference list (tables, aliases, joins, derived tables) starting at i."""
        depth = 0
        while True:
            while self.k(i) == "(" and self.k(i + 1) not in _SUBQ:         # parenthesised join
                depth, i = depth + 1, i + 1
            if self.k(i) == "(":                                           # derived table [AS] alias [(cols)]
                self.scan(i + 1, reads, (j := self.close(i)) - 1)
                i = self.close(i) if self.k(i := self.alias(j)[1]) == "(" else i
            elif self.ident(i) is None:
                return i
            else:
                r, i = self.ref(i)
                a, i = self.alias(self.close(i + 1) if self.k(i) == "PARTITION" and self.k(i + 1) == "(" else i)
                while self.k(i) in ("USE", "IGNORE", "FORCE") and self.k(i + 1) in ("INDEX", "KEY"):
                    i = self.close(self.find(i, ("(",)))                    # index hint
                out.append((r, a))
            while (k := self.k(i)) == "ON" or k == ")" and depth or k == "USING" and self.k(i + 1) == "(":
                if k == "ON":                                               # join condition
                    self.scan(i + 1, reads, i := self.find(i + 1, _ON_END))
                else:
                    depth, i = depth - (k == ")"), i + 1 if k == ")" else self.close(i + 1)
            j = i + 1 if k == "," else self.skip(i, _JOINPRE)
            if k != "," and self.k(j) not in _JOIN:
                return i
            i = j + (k != ",")

    def scan(self, i: int, reads: list[TableRef], end: int = 1 << 62, marks: dict[str, int] | None = None) -> None:
        """Collect tables after FROM (of a SELECT), JOIN, REFERENCES; note top-level clauses in `marks`."""
        sel = [False]
        while i < end and (k := self.k(i)):
            if k == "(":
                sel.append(False)
            elif k == ")" and len(sel) > 1:
                sel.pop()
            elif k == "SELECT":
                sel[-1] = True
            elif k in _JOIN or k == "REFERENCES" or (k == "FROM" and sel[-1]):
                i = self.refs(i + 1, out := [], reads)
                reads.extend(r for r, _ in out if r.name.upper() != "DUAL")
                continue
            elif marks is not None and k in _MARKS and len(sel) == 1 and k not in marks:
                marks[k] = i
            i += 1

    def stmt(self, s: int) -> StatementInfo:
        s = self.skip(s, (";",))
        k, k1 = self.k(s), self.k(s + 1)
        if k in ("INSERT", "REPLACE", "UPDATE", "DELETE"):
            return self.dml(s, k)
        if k in ("CREATE", "DROP", "ALTER", "RENAME"):
            return self.ddl(s, k)
        if k == "TRUNCATE":
            return StatementInfo("ddl", "TRUNCATE", (self.ref(s + 1 + (k1 == "TABLE"))[0],))
        if k in ("BEGIN", "START") and k1 in ("", "WORK", ";", "TRANSACTION"):
            return StatementInfo("begin", "BEGIN")
        if k == "ROLLBACK" and self.k(self.find(s, ("TO",))) == "TO":
            return StatementInfo("savepoint", "ROLLBACK TO")
        if k in _SIMPLE and (k != "RELEASE" or k1 == "SAVEPOINT"):
            return StatementInfo(*_SIMPLE[k])
        if k in ("GRANT", "REVOKE"):
            return StatementInfo("dcl", k, self.grant_target(s))
        if k == "SET" and k1 in ("PASSWORD", "DEFAULT"):
            return StatementInfo("dcl", "SET PASSWORD" if k1 == "PASSWORD" else "SET DEFAULT ROLE")
        if k == "SET":
            j = self.find(s, ("FOR",))                  # MariaDB: SET STATEMENT var=value, ... FOR <statement>
            return self.stmt(j + 1) if k1 == "STATEMENT" and self.k(j) == "FOR" else StatementInfo("other", "SET")
        if k in ("FLUSH", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK"):
            i = s + 1 + (k1 in ("NO_WRITE_TO_BINLOG", "LOCAL"))
            tabs = self.k(i) in ("TABLE", "TABLES") and self.k(i + 1) not in ("WITH", "FOR", "")
            return StatementInfo("dcl" if self.k(i) == "PRIVILEGES" else "other",
                                 k + " TABLE" * (tabs and k != "FLUSH"), tuple(self.names(i + 1)) if tabs else ())
        if k == "LOAD" and k1 in ("DATA", "XML"):
            _need(self.k(j := self.find(s, ("INTO",))) == "INTO" and self.k(j + 1) == "TABLE")
            return StatementInfo("load", "LOAD " + k1, (self.ref(j + 2)[0],))
        if k in _MISC:
            self.scan(s, reads := [])
            return StatementInfo("other", {"(": "SELECT", "BEGIN": "BEGIN NOT ATOMIC"}.get(k, k), read=_uniq(reads))
        return _OTHER

    def dml(self, s: int, verb: str) -> StatementInfo:
        i = self.skip(s + 1, ("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "QUICK", "IGNORE"))
        out, reads = [], []
        if verb in ("INSERT", "REPLACE"):
            target, i = self.ref(i + (self.k(i) == "INTO"))
            i = self.close(i + 1) if self.k(i) == "PARTITION" and self.k(i + 1) == "(" else i
            i = self.close(i) if self.k(i) == "(" and self.k(i + 1) not in _SUBQ else i
            if self.k(i) not in ("VALUES", "VALUE", "SET") or (   # skip scanning long VALUES lists
                    self.it is None and ("SELECT" in self.u or "JOIN" in self.u)):
                self.scan(i, reads)
            return StatementInfo("dml", verb, (target,), _uniq(reads))
        targets: list[tuple[str | None, str]] = []
        if verb == "UPDATE":
            _need(self.k(i := self.refs(i, out, reads)) == "SET")
        else:
            j = i + (self.k(i) == "FROM") - 1
            while not targets or self.k(j) == ",":        # DELETE a, db.b, c.* FROM ... / DELETE FROM a USING ...
                q, n, j = self.qname(j + 1)
                targets.append((q, n))
            if self.k(i) == "FROM" and self.k(j) != "USING":
                i, targets = self.refs(i + 1, out, reads), []      # single-table DELETE FROM t ...
            else:
                _need(self.k(j) in ("USING", "FROM"))
                i = self.refs(j + 1, out, reads)
        _need(bool(written := [r for r, _ in out]))
        if targets:                         # multi-table DELETE: each target is an alias or a table name
            hits = [next((x for x, (r, a) in enumerate(out) if (a == n if q is None and a is not None
                          else r.name == n and q in (None, r.db))), None) for q, n in targets]
            written = [out[x][0] if x is not None else TableRef(q if q is not None else self.db, n)
                       for x, (q, n) in zip(hits, targets)]
            reads[:0] = [r for x, (r, _) in enumerate(out) if x not in hits]
        self.scan(i, reads, marks=(marks := {}))
        w, lim = marks.get("WHERE"), "LIMIT" in marks
        e = min([v for v in marks.values() if v > (w or 0)] or [self.k(1 << 62) or len(self.t)])
        trivial = w is not None and e - w <= 200 and _true([x for x in self.t[w + 1:e] if x != ";"])
        return StatementInfo("dml", verb, _uniq(written), _uniq(reads), has_where=w is not None,
                             trivial_where=trivial, has_limit=lim)

    def ddl(self, s: int, verb: str) -> StatementInfo:
        i, orr, tmp = self.mods(s + 1)
        i = self.ifx(i)[0]                      # CREATE /*!32312 IF NOT EXISTS*/ DATABASE (sic)
        obj = _OBJ_ALIAS.get(self.k(i), self.k(i))
        i, ife = self.ifx(i + 1 + (obj == "PACKAGE" and self.k(i + 1) == "BODY"))
        written, reads, renames = [], [], []
        if verb == "RENAME" and obj == "TABLE":
            while not renames or self.k(i) == ",":
                old, i = self.ref(i + bool(renames))
                i += {"WAIT": 2, "NOWAIT": 1}.get(self.k(i), 0)
                _need(self.k(i) == "TO")
                new, i = self.ref(i + 1)
                renames.append((old, new))
        elif verb == "DROP" and obj in ("TABLE", "SEQUENCE", "VIEW"):
            written = self.names(i)
        elif obj in ("TABLE", "SEQUENCE", "VIEW"):
            r, i = self.ref(i)
            written.append(r)
            if verb == "CREATE" and (self.k(i) == "LIKE" or self.k(i) == "(" and self.k(i + 1) == "LIKE"):
                reads.append(self.ref(i + 1 + (self.k(i) == "("))[0])
            self.scan(i, reads)
            while verb == "ALTER" and obj != "VIEW" and self.k(i := self.find(i, ("RENAME", "WITH"))) not in ("", ")"):
                if self.k(i) == "WITH" and self.k(i + 1) == "TABLE":      # EXCHANGE PARTITION p WITH TABLE t
                    written.append((t := self.ref(i + 2))[0])
                    i = t[1]
                elif self.k(i) == "RENAME" and self.k(i + 1) not in ("COLUMN", "INDEX", "KEY"):
                    new, i = self.ref(i + 1 + (self.k(i + 1) in ("TO", "AS", "=")))
                    renames.append((r, new))
                else:
                    i += 1
        elif obj == "DATABASE":
            n = self.ident(i) if verb != "ALTER" or self.k(i) not in _DB_OPTS else self.db  # ALTER DATABASE CHARSET x
            _need(n is not None or verb == "ALTER")
            written = [TableRef(n, None)] if n is not None else []
        elif obj == "INDEX" or obj == "TRIGGER" and verb == "CREATE":
            q = self.qname(i)[0] if obj == "TRIGGER" else None
            _need(self.k(j := self.find(i, ("ON",))) == "ON")
            t, i = self.ref(j + 1, q)                               # a trigger's table lives in its schema
            written.append(t)
            self.scan(i, reads)
        elif obj in ("TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "PACKAGE"):
            r, i = self.ref(i)
            written.append(TableRef(None, r.name) if self.k(i) == "RETURNS" else r)  # loadable UDF: no db
            if verb == "ALTER" and self.k(j := self.find(i, ("RENAME",))) == "RENAME" and self.k(j + 1) == "TO":
                written.append(self.ref(j + 2)[0])
            self.scan(i, reads)
        elif obj in ("USER", "ROLE"):
            return StatementInfo("dcl", f"{verb} {obj}", if_exists=ife)
        elif obj not in ("SERVER", "TABLESPACE", "LOGFILE"):
            return _OTHER
        return StatementInfo("ddl", f"{verb} {obj}", _uniq(written + [r for p in renames for r in p]), _uniq(reads),
                             tmp, ife, renames=tuple(renames), or_replace=orr)

    def grant_target(self, s: int) -> tuple[TableRef, ...]:
        """GRANT/REVOKE ... ON [TABLE|PROCEDURE|...] level: *.* -> (), db.* / * -> (db, None), [db.]t -> (db, t)."""
        j = self.skip(self.find(s, ("ON",)) + 1, ("TABLE", "FUNCTION", "PROCEDURE", "PACKAGE", "BODY"))
        star, n = self.k(j) == "*", self.ident(j)
        if self.k(j - 1) in ("", ")") or (self.k(j + 1) == "." or self.db is None if star else n is None):
            return ()                                       # no ON (GRANT role TO user), *.*, ON a proxy user
        if star or self.k(j + 1) == "." and self.k(j + 2) == "*":
            return (TableRef(self.db if star else n, None),)
        return (self.ref(j)[0],)


_NUMPFX = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMLIT = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+")
_OPS = {"=": eq, "<=>": eq, "<>": ne, "!=": ne, "<": lt, ">": gt, "<=": le, ">=": ge}


def _split(t: list[str], ops: tuple[str, ...]) -> list[list[str]]:
    """Split at the top-level (paren depth 0) tokens in `ops`."""
    depths = accumulate((x == "(") - (x == ")") for x in t)
    cuts = [-1] + [i for i, (x, d) in enumerate(zip(t, depths)) if d == 0 and x.upper() in ops] + [len(t)]
    return [t[a + 1:b] for a, b in zip(cuts, cuts[1:])]


def _true(t: list[str]) -> bool:
    """Always true: an OR with one branch that is an AND of literals / literal comparisons that all hold."""
    return any(all(map(_atom, _split(d, ("AND", "&&")))) for d in _split(t, ("OR", "||")))


def _atom(t: list[str]) -> bool:
    if len(t) >= 2 and t[0] == "(" and t[-1] == ")" and len(_split(t, (")",))) == 2:   # (...) around it all
        return _true(t[1:-1])
    if any((x[0].isalpha() or x[0] == "`") and x[-1] != "'" and x.upper() not in ("TRUE", "FALSE") for x in t):
        return False                                    # names a column or calls a function: not literal-only
    for x, tok in enumerate(t):
        if tok in _OPS:
            (a, an), (b, bn) = _lit(t[:x]), _lit(t[x + 1:])
            if isinstance(a, str) and isinstance(b, str):          # case-insensitive, PAD SPACE collation
                return _OPS[tok](a.casefold().rstrip(" "), b.casefold().rstrip(" "))
            return a is not None and b is not None and _OPS[tok](an, bn)
    return _lit(t)[1] not in (None, 0)


def _lit(t: list[str]) -> tuple[float | str | None, float | None]:
    """A literal -> (value, its numeric value): [-]number, TRUE/FALSE, 'string', _charset'...', N'...'."""
    sign = {"-": -1.0, "+": 1.0}.get(t[0], 0.0) if len(t) == 2 else float(len(t) == 1)
    x, u, q = (t[-1], t[-1].upper(), t[-1].find("'")) if sign else ("", "", -1)
    if u in ("TRUE", "FALSE"):
        return sign * (u == "TRUE"), sign * (u == "TRUE")
    if _NUMLIT.fullmatch(x):
        v = sign * (int(x[2:], 16) if u.startswith("0X") else float(x))
        return v, v
    if len(t) == 1 and len(x) >= q + 2 and x[-1] == "'" and (q == 0 or x[0] in "_nN"):
        v = re.sub(r"\\(.)", r"\1", x[q + 1:-1].replace("''", "'"))
        return v, float(m.group()) if (m := _NUMPFX.match(v)) else 0.0    # MySQL: the leading number, else 0
    return None, None


def analyze(sql: str, default_db: str | None) -> StatementInfo:
    """Classify one statement; `default_db` is the QUERY event's current database (or None)."""
    try:
        sql = sql.decode("utf-8", "replace") if isinstance(sql, (bytes, bytearray)) else sql
        if "/*!" in sql or "/*M!" in sql:
            sql = _VERSIONED.sub(r" \1 ", sql)
        return _P(sql, default_db or None).stmt(0)
    except Exception:  # noqa: BLE001 - never raise: "cannot tell"
        return _OTHER
