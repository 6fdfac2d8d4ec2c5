"""What the command line prints for people (JSON output bypasses this)."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from restore.api import Plan, RestoreResult, iso
from restore.errors import RestoreError

out = Console()
err = Console(file=sys.stderr)


def plan(p: Plan) -> None:
    out.print(f"[bold]Plan {p.plan_id}[/]  binlogs: {p.binlogs}")
    for db, s in sorted(p.databases.items()):
        start = f"{s.file}:{s.pos}" if s.file else f"GTID {s.gtid}"
        out.print(f"  {db}: from {start}  ({s.source})")
    if p.stop:
        st = p.stop
        out.print(f"[bold red]Stops before[/] {st.tx_file}:{st.tx_pos}"
                  f"{' (GTID ' + st.gtid + ')' if st.gtid else ''} at {iso(st.timestamp)}: {st.reason}")
        if st.statement:
            out.print(f"  statement: {st.statement[:300]}")
    else:
        out.print(f"Replays to the end of the binlog: {p.end[0]}:{p.end[1]}")
    for later in p.later:
        out.print(f"  if the replay judges it not destructive: "
                  + (f"stops before {later.stop.tx_file}:{later.stop.tx_pos}: {later.stop.reason}" if later.stop
                     else f"replays to {later.end[0]}:{later.end[1]}"))
    if p.candidates:
        table = Table("", "severity", "at", "GTID", "time", "what")
        for c in p.candidates:
            table.add_row("→" if c.chosen else "", c.severity + (" (skipped)" if c.skipped else ""),
                          f"{c.file}:{c.pos}", c.gtid or "-", iso(c.timestamp) or "-", c.reason[:160])
        out.print("Disaster candidates in the window:")
        out.print(table)
        if p.candidates_left_out:
            out.print(f"  ... and {p.candidates_left_out} more suspects not listed")
    for sk in p.skips:
        out.print(f"Skips {sk.tx_file}:{sk.tx_pos}{' (GTID ' + sk.gtid + ')' if sk.gtid else ''}: {sk.statement[:200]}")
    out.print(f"{p.transactions} transactions from {iso(p.first_timestamp) or '-'} to {iso(p.last_timestamp) or '-'}; "
              f"{p.left_out} events of other databases left out")
    table = Table("table", "in snapshot", "inserted", "updated", "deleted", "expected rows")
    for name, t in sorted(p.tables.items()):
        table.add_row(name, str(t.snapshot_rows), str(t.inserted), str(t.updated), str(t.deleted),
                      str(t.predicted) if t.predicted is not None else "unknown (statement DML)")
    out.print(table)
    for w in p.warnings:
        out.print(f"[yellow]note:[/] {w}")


def restore(r: RestoreResult, *, sandbox: bool) -> None:
    verdict = "[green]succeeded[/]" if r.ok else "[red]failed[/]"
    out.print(f"Restore into {'a sandbox' if sandbox else r.target} {verdict}"
              f"{' (resumed)' if r.resumed else ''}")
    for ph in r.phases:
        out.print(f"  {ph['phase']}: {ph['seconds']:.1f}s")
    for db, aside in r.kept_aside.items():
        out.print(f"  what {db} held before is kept in {aside}")
    if r.verification:
        table = Table("table", "rows", "expected", "CHECKSUM TABLE", "ok")
        for name, t in sorted(r.verification.tables.items()):
            table.add_row(name, str(t.rows), "-" if t.predicted is None else str(t.predicted),
                          str(t.checksum), "yes" if t.ok else "[red]NO[/]")
        out.print(table)
        for problem in r.verification.problems():
            out.print(f"[red]problem:[/] {problem}")
    if sandbox:
        out.print("The sandbox is removed now; the checksums above are what it verified.")


def error(exc: RestoreError) -> None:
    err.print(f"[red]error:[/] {exc}")
    if exc.hint:
        err.print(f"[bold]next:[/] {exc.hint}")
