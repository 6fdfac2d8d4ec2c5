"""Looking at the target's rows an undo touches, and applying the undo in one transaction.

What the target holds at each row an action touches is `observed` at preview time (kept with the
action in the undo's Store); the apply reads the same rows again `FOR UPDATE` inside its own
transaction and goes on only if nothing changed (else it rolls back: never half-applied). A row
put back where the preview saw none is not read again: a row arriving there meanwhile makes its
INSERT fail on the key, which rolls everything back the same way. Everything goes by batches of
keys (SELECT ... IN, multi-row INSERT, DELETE ... IN, one UPDATE joined to a derived table of
values), so neither memory nor round trips grow per row. Values are compared in Python, exactly
(restore.undo.values decodes the binlog to the values PyMySQL returns), never with the server's
collations.
"""
from __future__ import annotations

import hashlib
import itertools
import json

import pymysql

from restore.errors import RestoreError
from restore.mysql.quote import quote_ident, quote_qualified
from restore.target.binlog import ACCESS_DENIED
from restore.target.checkpoint import SCHEMA
from restore.undo.fast_apply import put_back
from restore.undo.inverse import Action, TableUndo, shown
from restore.undo.store import dumps, key_value
from restore.undo.values import SESSION_SQL, TableSchema
from restore.undo.verify_rows import verify_binlog_rows

_RECORD = quote_qualified(SCHEMA, "undo")
_RECORD_DDL = (f"CREATE DATABASE IF NOT EXISTS {quote_ident(SCHEMA)}",
               f"CREATE TABLE IF NOT EXISTS {_RECORD} (transaction_id VARCHAR(255) PRIMARY KEY, "
               "preview_id VARCHAR(64) NOT NULL, applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), "
               "summary LONGTEXT NOT NULL) ENGINE=InnoDB")
CHANGED_HINT = "the target changed since the preview; run the preview again (restore-bot undo ... --dry-run)"


def connect(dsn):
    """A target session as restore.undo.values reads and writes values (SESSION_SQL: TIMESTAMPs in
    UTC, zero dates taken back)."""
    conn = dsn.connect(autocommit=True)
    with conn.cursor() as cur:
        for sql in SESSION_SQL:
            cur.execute(sql)
    return conn


def _where_key(schema: TableSchema, row: tuple) -> tuple[str, list]:
    cols = schema.key or tuple(range(len(schema.columns)))
    op = "=" if schema.key else "<=>"
    return (" AND ".join(f"{quote_ident(schema.columns[i].name)} {op} %s" for i in cols),
            [row[i] for i in cols])


BATCH = 2000    # keys looked up per SELECT
ER_DUP_ENTRY = 1062


def literal(conn, value) -> str:
    """A value as SQL text; integers (most keys) without PyMySQL's per-type dispatch."""
    return str(value) if type(value) is int else conn.escape(value)


def row_literal(conn, row: tuple, cols: list[int]) -> str:
    """`(v1,v2,...)` of the columns `cols` of a row: PyMySQL's own escaping, called per type
    directly (this runs once per value of every row put back)."""
    enc, escape, out = conn.encoders, conn.escape, []
    for i in cols:
        v = row[i]
        t = type(v)
        if t is int:
            out.append(str(v))
        elif v is None:
            out.append("NULL")
        elif t is str or t not in enc:
            out.append(escape(v))
        else:
            out.append(enc[t](v, enc))
    return "(" + ",".join(out) + ")"


def _observe_batch(conn, schema: TableSchema, actions: list[Action], lock: bool) -> list:
    """Per action, what the target holds: the row at its key (or None), or, in a table without a
    key, how many rows are identical to it."""
    suffix = " FOR UPDATE" if lock else ""
    with conn.cursor() as cur:
        if not schema.key:
            out = []
            for action in actions:
                where, args = _where_key(schema, action.row)
                cur.execute(f"SELECT {schema.select_list()} FROM {schema.ident} WHERE {where}{suffix}", args)
                out.append(sum(1 for r in cur.fetchall() if tuple(r) == action.row))
            return out
        # A key is found by Python equality on what the server returns: a row the server's collation
        # would match but whose key is not exactly the binlog's is "no row", and the undo is refused
        # rather than guessed.
        keys = [a.key(schema) for a in actions]
        cur.execute(f"SELECT {schema.select_list()} FROM {schema.ident} WHERE {key_in(conn, schema, keys)}{suffix}")
        found = {schema.key_of(tuple(r)): tuple(r) for r in cur.fetchall()}
    return [found.get(k) for k in keys]


def key_in(conn, schema: TableSchema, keys: list[tuple]) -> str:
    """`pk IN (...)` (or `(a, b) IN ((...), ...)`) for the primary keys `keys`."""
    if len(schema.key) == 1:
        return (f"{quote_ident(schema.columns[schema.key[0]].name)} IN ("
                + ", ".join(literal(conn, k[0]) for k in keys) + ")")
    names = "(" + ", ".join(quote_ident(schema.columns[i].name) for i in schema.key) + ")"
    return f"{names} IN (" + ", ".join("(" + ", ".join(literal(conn, v) for v in k) + ")" for k in keys) + ")"


def look(conn, tables: list[TableUndo], undone_id: str) -> tuple[str, list[dict]]:
    """The preview's look at the target: what it holds at every action's row, kept with the action
    (the apply compares against it under lock). Returns the preview's id (what the operator saw, as
    a short hash: the same undo on the same target rows has the same id) and the stale rows: where
    the target does not hold what the binlog's end says (the binlog read is older than the target,
    or the target was written outside it), which refuse the undo."""
    digest = hashlib.sha256(undone_id.encode())
    stale: list[dict] = []
    for table in tables:
        schema = table.schema
        digest.update(b"\0table " + schema.full_name.encode())
        if table.fast is not None:
            table.fast.look(conn, digest, stale)
        elif table.raw is not None:
            _look_raw(conn, table, digest, stale)
        for actions in table.batches(BATCH, decoded=table.raw is not None):
            seen = _observe_batch(conn, schema, actions, False)
            table.set_observed(actions, seen)
            for action, now in zip(actions, seen):
                # the row as stored (pickled once, from the binlog's decoding): not unpickled to be hashed
                digest.update(action.blob or dumps(action.row))
                digest.update(repr((action.kind, sorted(action.sets.items()), action.count, now)).encode())
                bad = now != action.expected if schema.key else action.kind != "insert" and now < action.count
                if bad:
                    stale.append({"table": schema.full_name, "key": schema.key_text(action.row), "action": action.kind,
                                  "binlog_end": shown(action.expected), "target": shown(now)})
    return digest.hexdigest()[:16], stale


def _look_raw(conn, table: TableUndo, digest, stale: list[dict]) -> None:
    """look() for the rows kept as logged (restore.undo.raw): all inserts, so any row found at
    their keys is stale; their images are hashed as they are stored, none is decoded unless found."""
    schema = table.schema
    found_at: list[tuple[int, bytes, tuple]] = []
    rows = table.store.query("SELECT seq, k, row FROM act WHERE t = ? AND raw = 1 ORDER BY seq", (table.tid,), BATCH)
    while chunk := list(itertools.islice(rows, BATCH)):
        keys = [key_value(k) for _, k, _ in chunk]
        found = {} if _none_between(conn, schema, keys) else _found(conn, schema, keys)
        digest.update(b"".join(row if type(row) is bytes else row.to_bytes(8, "little") for _, _, row in chunk))
        found_at += [(seq, row, found[key]) for (seq, _, row), key in zip(chunk, keys) if key in found]
    for seq, row, now in found_at:
        digest.update(repr((seq, now)).encode())
        stale.append({"table": schema.full_name, "key": schema.key_text(table.raw.decode(row)), "action": "insert",
                      "binlog_end": None, "target": shown(now)})
    table.store.db.executemany("UPDATE act SET observed = ? WHERE t = ? AND seq = ?",
                               [(dumps(now), table.tid, seq) for seq, _, now in found_at])


def _found(conn, schema: TableSchema, keys: list[tuple]) -> dict[tuple, tuple]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {schema.select_list()} FROM {schema.ident} WHERE {key_in(conn, schema, keys)}")
        return {schema.key_of(tuple(r)): tuple(r) for r in cur.fetchall()}


def _none_between(conn, schema: TableSchema, keys: list[tuple]) -> bool:
    """The target holds no row between the least and the greatest of integer keys `keys` (one
    index range instead of a look-up per key: a DELETE logs its rows in key order, so its rows put
    back come by ranges, most often empty ones on the target)."""
    if len(schema.key) != 1 or any(type(k[0]) is not int for k in keys):
        return False
    name = quote_ident(schema.columns[schema.key[0]].name)
    with conn.cursor() as cur:
        cur.execute(f"SELECT 1 FROM {schema.ident} WHERE {name} BETWEEN {min(keys)[0]} AND {max(keys)[0]} LIMIT 1")
        return cur.fetchone() is None


def done_before(conn, undone_id: str) -> dict | None:
    """The record of this transaction's undo applied earlier on this target, if any."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME='undo'", (SCHEMA,))
        if not cur.fetchone():
            return None
        cur.execute(f"SELECT preview_id, applied_at, summary FROM {_RECORD} WHERE transaction_id = %s", (undone_id,))
        row = cur.fetchone()
    return None if row is None else {"preview_id": row[0], "applied_at": str(row[1]), "summary": json.loads(row[2])}


BY_BINLOG = "BINLOG row events (the deleted rows' images as logged)"


def apply(conn, tables: list[TableUndo], *, undone_id: str, pid: str, summary: dict) -> dict[str, str]:
    """All actions in one transaction, after checking under lock that the rows are as the preview
    saw them; the same transaction records the undo in `_restore_bot.undo`, so a run after a crash
    either finds nothing done or the record (never a half). Returns, per table with rows kept as
    logged (restore.undo.raw), how they were put back: BY_BINLOG, or why by INSERT instead."""
    with conn.cursor() as cur:
        for sql in _RECORD_DDL:     # DDL commits: before the transaction, never inside it
            cur.execute(sql)
        how = {t.schema.full_name: binlog_refused(cur, t) or BY_BINLOG for t in tables if t.raw is not None}
        cur.execute("START TRANSACTION")
        try:
            cur.execute(f"INSERT INTO {_RECORD} (transaction_id, preview_id, summary) VALUES (%s, %s, %s)",
                        (undone_id, pid, json.dumps(summary, default=str)))
            for table in tables:
                # a row put back where the preview saw none needs no look: if one came meanwhile,
                # its INSERT fails on the key and the whole undo rolls back
                for actions in table.batches(BATCH, seen=bool(table.schema.key)):
                    if _observe_batch(conn, table.schema, actions, True) != [a.observed for a in actions]:
                        raise _changed(table)
            # deletes, then updates, then inserts: a row put back never meets a unique value that the
            # undo itself is about to remove (an UPDATE that changed a primary key is a delete + insert)
            for kind in ("delete", "update"):
                for table in tables:
                    _write(conn, cur, table, kind)
            for table in tables:
                binlog = how.get(table.schema.full_name) == BY_BINLOG
                try:
                    if binlog:
                        _insert_raw(cur, table)
                    _insert(conn, cur, table, decoded=binlog)
                except pymysql.MySQLError as exc:
                    if exc.args[0] == ER_DUP_ENTRY and "for key 'PRIMARY'" in str(exc.args[-1]):
                        raise _changed(table) from exc
                    raise
            cur.execute("COMMIT")
        except pymysql.MySQLError as exc:
            _rollback(cur)
            raise RestoreError(f"the target refused the undo ({exc.args[-1]}); it was rolled back: nothing was changed",
                               hint="a duplicate key means another undo ran at the same time or a unique value was "
                                    "taken again later: run the preview again (--dry-run) and read its conflicts") from exc
        except BaseException:
            _rollback(cur)
            raise
    return how


def binlog_refused(cur, table: TableUndo) -> str | None:
    """Why the rows kept as logged cannot be put back by BINLOG statements on this target (they
    are then decoded and INSERTed), or None. The format description is sent here, once per session."""
    cur.execute("SELECT @@GLOBAL.slave_exec_mode, @@GLOBAL.slave_type_conversions, @@log_bin, @@SESSION.binlog_format")
    mode, conversions, log_bin, binlog_format = cur.fetchone()
    if "IDEMPOTENT" in str(mode).upper() or conversions:
        # a row event would overwrite a row holding the key, or be converted to other column types
        return (f"the target applies row events with slave_exec_mode={mode}, slave_type_conversions='{conversions}': "
                "put back by INSERT")
    if log_bin and str(binlog_format).upper() == "STATEMENT":
        return "the target logs binlog_format=STATEMENT, which cannot log row events: put back by INSERT"
    try:
        cur.execute(table.raw.fde_statement())
    except pymysql.MySQLError as exc:
        if exc.args[0] in ACCESS_DENIED:
            return f"the target user may not run BINLOG statements ({exc.args[-1]}): put back by INSERT"
        raise
    return None


def _insert_raw(cur, table: TableUndo) -> None:
    """The rows kept as logged, as BINLOG statements of WRITE_ROWS events (restore.undo.raw). The
    server refuses a key taken (no overwrite: STRICT); that every row went in as a new one is
    checked inside the transaction: by the table's row count, or, for the pieces kept whole, by
    checking every row against its scratch copy (restore.undo.fast_apply)."""
    if table.fast is not None:
        put_back(table.fast, cur.connection, table)
        return
    ident = table.schema.ident
    cur.execute(f"SELECT COUNT(*) FROM {ident}")
    before = cur.fetchone()[0]
    want = table.raw.send(cur.connection, table.raw_inserts())
    cur.execute(f"SELECT COUNT(*) FROM {ident}")
    done = cur.fetchone()[0] - before
    if done != want:
        raise RestoreError(f"{table.schema.full_name}: {done} of {want} rows put back by BINLOG statements; "
                           "nothing was changed", hint=CHANGED_HINT)


def _changed(table: TableUndo) -> RestoreError:
    return RestoreError(f"{table.schema.full_name}: rows the undo touches changed on the target since the preview; "
                        "nothing was changed", hint=CHANGED_HINT)


def _rollback(cur) -> None:
    try:
        cur.execute("ROLLBACK")
    except pymysql.MySQLError:
        pass    # the session is gone: the server rolls its transaction back itself


INSERT_BYTES = 2 << 20    # SQL text per multi-row INSERT (held about three times over while it is sent)


def _insert(conn, cur, table: TableUndo, *, decoded: bool = False) -> None:
    """The rows put back (`decoded`: but those kept as logged), as multi-row INSERTs of about
    INSERT_BYTES each."""
    schema = table.schema
    cols = [i for i, c in enumerate(schema.columns) if not c.generated]
    head = f"INSERT INTO {schema.ident} ({', '.join(quote_ident(schema.columns[i].name) for i in cols)}) VALUES "
    parts: list[str] = []
    size = want = done = 0

    def send() -> int:
        return cur.execute(head + ",".join(parts))
    for action in table.actions("insert", decoded=decoded):
        text = row_literal(conn, action.row, cols)
        for _ in range(action.count):
            parts.append(text)
            size += len(text) + 1
            want += 1
        if size >= INSERT_BYTES:
            done += send()
            parts, size = [], 0
    if parts:
        done += send()
    if done != want:
        raise RestoreError(f"{schema.full_name}: {done} of {want} rows inserted back; nothing was changed",
                           hint=CHANGED_HINT)


def _write(conn, cur, table: TableUndo, kind: str) -> None:
    """The deletes or updates of a table: by batches of keys in a table with a primary key (an
    update batch per set of columns put back), one statement per action in a table without."""
    schema = table.schema
    if not schema.key:
        for action in table.actions(kind):
            _run(cur, schema, action)
        return
    for actions in table.batches(BATCH, kind):
        if kind == "delete":
            _expect(schema, kind, actions, cur.execute(f"DELETE FROM {schema.ident} WHERE "
                                                       f"{key_in(conn, schema, [a.key(schema) for a in actions])}"))
            continue
        groups: dict[tuple, list[Action]] = {}
        for action in actions:
            groups.setdefault(tuple(action.sets), []).append(action)
        for cols, group in groups.items():
            _update(conn, cur, schema, cols, group)


def _update(conn, cur, schema: TableSchema, cols: tuple[int, ...], actions: list[Action]) -> None:
    """One multi-table UPDATE putting `cols` back in every row of `actions`, the values carried by
    a derived table of literals (each converted to its column's type on assignment, as a plain
    `SET col = literal` is)."""
    key = schema.key
    names = [f"c{j}" for j in range(len(key) + len(cols))]
    rows = []
    for action in actions:
        values = [literal(conn, v) for v in action.key(schema)] + [literal(conn, action.sets[i]) for i in cols]
        rows.append("SELECT " + ", ".join(f"{v} AS {n}" if not rows else v for v, n in zip(values, names)))
    on = " AND ".join(f"t.{quote_ident(schema.columns[i].name)} = v.{names[j]}" for j, i in enumerate(key))
    sets = ", ".join(f"t.{quote_ident(schema.columns[i].name)} = v.{names[len(key) + j]}" for j, i in enumerate(cols))
    done = cur.execute(f"UPDATE {schema.ident} AS t JOIN ({' UNION ALL '.join(rows)}) AS v ON {on} SET {sets}")
    _expect(schema, "update", actions, done)


def _expect(schema: TableSchema, kind: str, actions: list[Action], done: int) -> None:
    if done != len(actions):
        raise RestoreError(f"{schema.full_name}: {kind}s from {schema.key_text(actions[0].row)} on changed {done} rows, "
                           f"{len(actions)} expected; nothing was changed", hint=CHANGED_HINT)


def _run(cur, schema: TableSchema, action: Action) -> None:
    where, args = _where_key(schema, action.row)
    limit = "" if schema.key else f" LIMIT {action.count}"     # identical rows: as many as the action's
    if action.kind == "update":
        sets = ", ".join(f"{quote_ident(schema.columns[i].name)} = %s" for i in action.sets)
        done = cur.execute(f"UPDATE {schema.ident} SET {sets} WHERE {where}{limit}", list(action.sets.values()) + args)
    else:
        done = cur.execute(f"DELETE FROM {schema.ident} WHERE {where}{limit}", args)
    if done != action.count:
        raise RestoreError(f"{schema.full_name} {schema.key_text(action.row)}: the {action.kind} changed {done} rows, "
                           f"{action.count} expected; nothing was changed", hint=CHANGED_HINT)


def verify(conn, tables: list[TableUndo], by_binlog: set[str] = frozenset()) -> list[dict]:
    """After the commit: every row the undo wrote holds its intended image (PK tables), and a table
    without a key holds as many identical rows as intended. Rows put back by BINLOG (`by_binlog`
    tables) are compared by the server, all of them, with a scratch copy the same statements
    write (restore.undo.verify_rows); those kept whole were compared before the commit already
    (restore.undo.fast_apply)."""
    problems = []
    for table in tables:
        schema = table.schema
        binlog = schema.full_name in by_binlog
        if binlog and table.fast is None:
            problems += verify_binlog_rows(conn, table)
        for actions in filter(None, table.batches(BATCH, decoded=binlog)):
            for action, now in zip(actions, _observe_batch(conn, schema, actions, False)):
                was = action.observed
                if schema.key:
                    want = action.intended()
                    if want is not None and now is not None:   # generated columns: the server computes them
                        want, now = _stored(schema, want), _stored(schema, now)
                else:
                    want = was + action.count if action.kind == "insert" else was - action.count
                if now != want:
                    problems.append({"table": schema.full_name, "key": schema.key_text(action.row),
                                     "action": action.kind, "intended": shown(want), "target": shown(now)})
    return problems


def _stored(schema: TableSchema, row: tuple) -> tuple:
    return tuple(None if c.generated else v for c, v in zip(schema.columns, row))
