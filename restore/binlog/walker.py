"""Turns a stream of raw events into transactions: begin, statements / row changes, end.

Planner and applier both walk the binlog through this, so they agree on where every
transaction starts and ends. Nothing is held per transaction but the current table maps:
a transaction of a million rows streams through in constant memory.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from restore.binlog import events as be
from restore.binlog.query import QueryEvent, UnknownStatusVar, UserVar, parse_query, parse_user_var
from restore.binlog.rows import TableMap, count_rows, parse_table_map
from restore.binlog.sql_scope import StatementInfo, analyze
from restore.errors import BinlogError, RestoreError


@dataclass(slots=True)
class TxBegin:
    file: str
    pos: int
    gtid: be.Gtid | None
    timestamp: int


@dataclass(slots=True)
class TxEnd:
    file: str
    pos: int          # where the next transaction starts: the resume point
    timestamp: int
    rolled_back: bool = False   # ended by ROLLBACK (logged when non-transactional tables changed)


@dataclass(slots=True)
class FormatStep:
    event: be.RawEvent
    fde: be.FormatDescription


@dataclass(slots=True)
class RowsStep:
    event: be.RawEvent
    table_map: be.RawEvent
    tmap: TableMap
    rows: int                      # -1 when not counted
    statement_end: bool
    annotate_event: be.RawEvent | None   # the statement text, when the source logged it

    @property
    def annotation(self) -> str | None:
        # Decoded on demand: only a stop, a skip or an alert ever shows it.
        ev = self.annotate_event
        return None if ev is None else bytes(ev.body).decode("utf-8", "replace")


@dataclass(slots=True)
class QueryStep:
    event: be.RawEvent
    query: QueryEvent
    info: StatementInfo
    intvars: list[tuple[int, int]] = field(default_factory=list)
    rand: tuple[int, int] | None = None
    user_vars: list[UserVar] = field(default_factory=list)


@dataclass(slots=True)
class StopAt:
    """The event at the `stop_at` position cannot be walked (damaged, or of a kind we refuse):
    instead of raising, the walk ends here, so `--stop-before FILE:POS` can name a bad event."""
    event: be.RawEvent


Step = TxBegin | TxEnd | FormatStep | RowsStep | QueryStep | StopAt

_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "XA"}


class Walker:
    def __init__(self, events: Iterable[be.RawEvent], *,
                 count: bool | Callable[[TableMap], bool] = False,
                 stop_at: tuple[str, int] | None = None) -> None:
        """`count`: count rows of row events — all (True), none, or those of tables it accepts.
        `stop_at`: (file, pos) of an event that ends the walk with a StopAt step if it raises."""
        self._events = events
        self._count = count
        self._stop_at = stop_at
        self.fde: be.FormatDescription | None = None
        # Events of a type we do not know that their server flagged ignorable (LOG_EVENT_IGNORABLE_F),
        # passed over: type -> [how many, where the first was].
        self.ignored: dict[int, list] = {}
        # "db.table" of every table a DDL statement named (created, altered, renamed to...): a table
        # the binlog writes that no snapshot holds and that is not here was never created in the window.
        self.ddl_tables: set[str] = set()

    def steps(self) -> Iterator[Step]:
        fde: be.FormatDescription | None = None
        tmaps: dict[bytes, tuple[be.RawEvent, TableMap]] = {}
        tm_cache: dict[bytes, TableMap] = {}
        in_tx = False
        ends_after_statement = False
        intvars: list[tuple[int, int]] = []
        rand: tuple[int, int] | None = None
        user_vars: list[UserVar] = []
        annotation: be.RawEvent | None = None
        count = self._count
        rows_events, table_map, annotate_rows = be.ROWS_EVENTS, be.TABLE_MAP, be.ANNOTATE_ROWS
        hlen, stmt_end_f = be.HEADER_LEN, be.STMT_END_F
        # Per row-event type: (post-header length, where its table id ends). Table maps are kept by
        # their table id's bytes as they lie in the event: no int to build per row event.
        rows_post: dict[int, tuple[int, int]] = {}
        tm_post, tm_id_end = 0, hlen + 6
        maria_gtid, gtid_types, query_t, xid_t = be.MARIADB_GTID, (be.MYSQL_GTID, be.ANONYMOUS_GTID), be.QUERY, be.XID
        # Most events are row events, their table maps and annotations: they come first.
        # Whatever goes wrong decoding an event becomes a BinlogError naming it; the try costs
        # nothing until something raises.
        ev: be.RawEvent | None = None
        payload_type, ignorable_f, known = be.TRANSACTION_PAYLOAD, be.LOG_EVENT_IGNORABLE_F, be.KNOWN_TYPES
        # A compressed transaction's events are walked as if they lay in the file: its iterator goes
        # on top of `sources` until it ends (a `for` per source: no cost per event of the file).
        sources: list[Iterator[be.RawEvent]] = [iter(self._events)]
        try:
            while sources:
                for ev in sources[-1]:
                    try:
                        t = ev.type
                        if t in rows_events:
                            if fde is None:
                                self._no_fde(ev)
                            data = ev.data
                            post, id_end = rows_post[t]
                            mapped = tmaps.get(data[hlen:id_end])
                            if mapped is None:
                                tid = int.from_bytes(data[hlen:id_end], "little")
                                raise BinlogError(f"row event at {ev.where} refers to table id {tid} with no table map before it",
                                                  where=ev.where, hint="the binlog was cut mid-statement; start at a transaction boundary")
                            tm_ev, tmap = mapped
                            rows = -1
                            if count is True or (count and count(tmap)):
                                rows = count_rows(ev, post, tmap)
                            stmt_end = bool(data[id_end] & stmt_end_f)   # the flags' low byte
                            if not in_tx:
                                in_tx, ends_after_statement = True, False
                                yield TxBegin(ev.file, ev.pos, None, ev.timestamp)
                            yield RowsStep(ev, tm_ev, tmap, rows, stmt_end, annotation)
                            if stmt_end:
                                annotation = None
                            continue
                        if t == table_map:
                            if fde is None:
                                self._no_fde(ev)
                            # Each statement repeats its table maps: parse each distinct one once.
                            data = ev.data
                            key = data[hlen:-4] if ev.checksum else data[hlen:]
                            tmap = tm_cache.get(key)
                            if tmap is None:
                                if len(tm_cache) > 4096:
                                    tm_cache.clear()
                                tmap = tm_cache[key] = parse_table_map(ev, tm_post)
                            tmaps[data[hlen:tm_id_end]] = (ev, tmap)
                            continue
                        if t == annotate_rows:
                            annotation = ev
                            continue
                        if t == be.FORMAT_DESCRIPTION:
                            fde = self.fde = be.parse_format_description(ev.data)
                            if fde.problem:
                                raise undecodable(ev, ValueError(fde.problem))
                            # Every row event of a file has the same post-header length: look it up once.
                            rows_post = {rt: (p, hlen + (4 if p == 6 else 6)) for rt in rows_events
                                         for p in (fde.post_header(rt),)}
                            tm_post = fde.post_header(table_map)
                            tm_id_end = hlen + (4 if tm_post == 6 else 6)
                            tmaps.clear()
                            yield FormatStep(ev, fde)
                            continue
                        if fde is None:
                            self._no_fde(ev)
                        if t == maria_gtid or t in gtid_types:
                            gtid = be.parse_mariadb_gtid(ev) if t == maria_gtid else be.parse_mysql_gtid(ev)
                            if gtid is not None and gtid.xa:
                                raise BinlogError(f"XA transaction {gtid} at {ev.where} cannot be replayed exactly",
                                                  where=ev.where, hint="stop the plan before it with --stop-before " + ev.where)
                            if in_tx:
                                raise BinlogError(f"transaction before {ev.where} never ended", where=ev.where,
                                                  hint="the binlog is damaged; stop the plan before this position")
                            in_tx = True
                            ends_after_statement = bool(gtid and gtid.standalone) or t != maria_gtid
                            intvars, rand, user_vars, annotation = [], None, [], None
                            yield TxBegin(ev.file, ev.pos, gtid, ev.timestamp)
                            continue
                        if t == xid_t:
                            if in_tx:
                                in_tx = False
                                tmaps.clear()
                                yield TxEnd(ev.file, ev.end, ev.timestamp)
                            continue
                        if t == query_t:
                            try:
                                q = parse_query(ev, fde.post_header(t))
                            except UnknownStatusVar as exc:
                                raise BinlogError(f"statement at {ev.where} has {exc}; replaying it without it would be inexact",
                                                  where=ev.where,
                                                  hint=("upgrade restore-bot, or stop before it with --stop-before " + ev.where) if ev.checksum
                                                  else _damage_hint(ev)) from None
                            info = analyze(q.query, q.db or None)
                            if info.kind == "ddl":
                                self._named_by_ddl(info)
                            if info.kind in ("begin",):
                                if not in_tx:
                                    in_tx, ends_after_statement = True, False
                                    yield TxBegin(ev.file, ev.pos, None, ev.timestamp)
                                ends_after_statement = False
                                continue
                            if info.kind in ("commit", "rollback"):
                                if in_tx:
                                    in_tx = False
                                    yield TxEnd(ev.file, ev.end, ev.timestamp, info.kind == "rollback")
                                continue
                            if info.kind == "xa":
                                raise BinlogError(f"XA statement at {ev.where} cannot be replayed exactly", where=ev.where,
                                                  hint="stop the plan before it with --stop-before " + ev.where)
                            standalone = not in_tx
                            if standalone:
                                in_tx = True
                                yield TxBegin(ev.file, ev.pos, None, ev.timestamp)
                            yield QueryStep(ev, q, info, intvars, rand, user_vars)
                            intvars, rand, user_vars = [], None, []
                            if standalone or ends_after_statement:
                                in_tx = False
                                yield TxEnd(ev.file, ev.end, ev.timestamp)
                            continue
                        if t == be.INTVAR:
                            intvars.append(be.parse_intvar(ev))
                            continue
                        if t == be.RAND:
                            rand = be.parse_rand(ev)
                            continue
                        if t == be.USER_VAR:
                            user_vars.append(parse_user_var(ev))
                            continue
                        if t in be.PASSIVE:
                            continue
                        if t == payload_type:
                            if len(sources) > 1:
                                raise BinlogError(f"{ev.where}: a compressed transaction inside a compressed transaction",
                                                  where=ev.where, hint=_damage_hint(ev))
                            sources.append(be.payload_events(ev))
                            break
                        if t not in known and ev.flags & ignorable_f:
                            seen = self.ignored.get(t)
                            if seen is None:
                                self.ignored[t] = [1, ev.where]
                            else:
                                seen[0] += 1
                            continue
                        reason = be.UNSUPPORTED.get(t, f"an event of unknown type {t}")
                        raise BinlogError(f"{ev.where} holds {reason}, which restore-bot cannot replay exactly",
                                          where=ev.where,
                                          hint=f"stop the restore before it with --stop-before {ev.where}, or turn the feature off on the source for future binlogs")
                    except Exception as exc:  # noqa: BLE001 - named, with its type and text, not swallowed
                        if (ev.file, ev.pos) == self._stop_at:
                            yield StopAt(ev)
                            return
                        if isinstance(exc, RestoreError):
                            raise
                        raise undecodable(ev, exc) from exc
                else:
                    sources.pop()
        except be.PayloadError as exc:
            # A compressed transaction that does not decompress: `--stop-before` it ends the walk there.
            if (exc.event.file, exc.event.pos) == self._stop_at:
                yield StopAt(exc.event)
                return
            raise
        except RestoreError:
            raise
        except _READ_ERRORS as exc:
            # Raised by the event source itself, past the last event it gave: what follows `ev`.
            raise unreadable(ev, exc) from exc

    def _named_by_ddl(self, info: StatementInfo) -> None:
        names = self.ddl_tables
        for t in info.written:
            if t.db and t.name:
                names.add(f"{t.db}.{t.name}")
        for _, new in info.renames:
            if new.db and new.name:
                names.add(f"{new.db}.{new.name}")

    @staticmethod
    def _no_fde(ev: be.RawEvent) -> None:
        raise BinlogError(f"no format description event before {ev.where}", where=ev.where,
                          hint="start reading at the beginning of a binlog file")


# What decoding damaged bytes raises (UnicodeDecodeError is a ValueError, struct.error is not).
_READ_ERRORS = (struct.error, ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError)


def _damage_hint(ev: be.RawEvent) -> str:
    return (f"copy {ev.file} again from the server or the archive and run the same command again (a replay stopped "
            f"here resumes from its last checkpoint); if the server's copy is damaged too, stop before it with "
            f"--stop-before {ev.where}. The file has no checksums (binlog_checksum=NONE), so damage shows only "
            f"where an event no longer decodes: compare the copy with the server's before trusting a restore from it")


def _cause(exc: BaseException) -> str:
    return f"{'struct.error' if isinstance(exc, struct.error) else type(exc).__name__}: {exc}"


def undecodable(ev: be.RawEvent, exc: BaseException) -> BinlogError:
    """The error for an event whose bytes do not decode: file, position, event type, the cause."""
    cause = _cause(exc)
    name = be.type_name(ev.type)
    if ev.checksum:
        # Its CRC32 matched, so the bytes are what the server wrote: a format we do not read (or a bug).
        return BinlogError(
            f"{ev.file}: the {name} event at position {ev.pos} cannot be decoded although its CRC32 checksum "
            f"matches ({cause})", where=ev.where,
            hint=f"stop before it with --stop-before {ev.where}, and report this (with the file) as a "
                 "restore-bot bug: the file itself is most likely intact")
    return BinlogError(f"{ev.file} is corrupt at position {ev.pos}: its {name} event cannot be decoded ({cause})",
                       where=ev.where, hint=_damage_hint(ev))


def unreadable(ev: be.RawEvent | None, exc: BaseException) -> BinlogError:
    """The error for an event source that failed past `ev`, the last event it gave (None: the first)."""
    cause = _cause(exc)
    if ev is None:
        return BinlogError(f"cannot read the first event of the binlog ({cause})",
                           hint="check the first binlog file: copy it again from the server or the archive")
    where = f"{ev.file}:{ev.end}"
    return BinlogError(f"{ev.file} is corrupt at position {ev.end}, after the event at {ev.pos}: it cannot be read ({cause})",
                       where=where,
                       hint=f"copy {ev.file} again from the server or the archive and run the same command again; if the "
                            "server's copy is damaged too, stop before the transaction holding this position with "
                            "--stop-before (its GTID, or the FILE:POS of its first event)")
