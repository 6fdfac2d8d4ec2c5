"""`restore-bot undo`: put back what one DELETE/UPDATE transaction destroyed, in place, keeping
every later write (restore.api.undo). A preview first (--dry-run); applying asks, or takes --yes."""
from __future__ import annotations

import argparse
import json
import sys

from bot import render
from bot.cli_jobs import add_cluster_option, cluster_settings
from restore import api
from restore.api import Dsn
from restore.errors import RestoreError


def add_parser(sub) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "undo", help="undo one DELETE/UPDATE transaction in place, keeping later writes")
    p.add_argument("--binlogs", metavar="DIR|DSN",
                   help="a directory of binlog files or mysql://user:pass@host:port, read to its end "
                        "(default: the --cluster's binlogs in --config)")
    p.add_argument("--target", required=True, metavar="DSN|NAME",
                   help="the server whose rows get put back: a DSN, or with --config a target's name (stage, prod)")
    p.add_argument("--config", help="TOML settings file (default: $RESTORE_BOT_CONFIG): where --cluster is read")
    add_cluster_option(p)
    p.add_argument("--event", required=True, metavar="SPEC",
                   help="the transaction: its GTID, FILE:POS of any of its events (restore-bot plan lists them), or "
                        "auto: the disaster restore-bot plan would choose")
    p.add_argument("--dry-run", action="store_true", help="show the preview only; writes nothing")
    p.add_argument("--preview", metavar="ID", help="apply only if the undo is still the one this preview showed")
    p.add_argument("--yes", action="store_true", help="apply without asking")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args) -> int:
    try:
        target = _inputs(args)
        inputs = api.UndoInput(args.binlogs, target, args.event, dry_run=True, preview=args.preview)
        if args.dry_run:
            return _show(args, api.undo(inputs))
        if not args.yes:
            if not sys.stdin.isatty():
                raise RestoreError(f"refusing to write into {target.redacted()} without confirmation",
                                   hint="run with --dry-run to see the preview, then pass --yes (and --preview ID)")
            preview = api.undo(inputs)
            _human(preview.to_dict())
            if input(f"Apply this undo to {target.redacted()}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing written", file=sys.stderr)
                return 1
            inputs = api.UndoInput(args.binlogs, target, args.event, dry_run=False, preview=preview.preview_id)
        else:
            inputs = api.UndoInput(args.binlogs, target, args.event, dry_run=False, preview=args.preview)
        return _show(args, api.undo(inputs))
    except RestoreError as exc:
        if args.json:
            _json({"ok": False, "error": exc.to_dict()})
        else:
            render.error(exc)
        return exc.exit_code


def _inputs(args) -> Dsn:
    """The target's DSN; --binlogs filled in from the config's cluster when left out, and a target
    named (stage, prod) read from it."""
    if "://" in args.target and args.binlogs:
        return Dsn.parse(args.target, what="--target")
    view = cluster_settings(args)
    args.binlogs = args.binlogs or view.source.binlogs
    if "://" in args.target:
        return Dsn.parse(args.target, what="--target")
    found = view.targets.get(args.target)
    if found is None or found.dsn == "sandbox":
        kept = [n for n, t in view.targets.items() if t.dsn != "sandbox"]
        raise RestoreError(f"--target {args.target}: not a kept server of cluster {args.cluster or 'default'} "
                           f"(kept targets: {', '.join(kept) or 'none'})",
                           hint="give a mysql:// DSN, or a target with a dsn in the config")
    return found.dsn


def _show(args, done: api.Undone) -> int:
    doc = dict(done.to_dict(), ok=not done.verification)
    if args.json:
        _json(doc)
    else:
        _human(doc)
    return 0 if doc["ok"] else 3


def _json(doc: dict) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _human(doc: dict) -> None:
    tx = doc["transaction"]
    print(f"transaction {tx['id']} at {tx['where']}")
    for text in tx["statements"]:
        print(f"  {text[:200]}")
    for t in doc["tables"]:
        rows = t["rows"]
        print(f"{t['table']}: {rows['insert']} to insert back, {rows['update']} to update back, "
              f"{rows['delete']} to delete, {rows['already']} already as before; {t['conflicts']} conflict(s)")
        for s in t["sample"]:
            print(f"  {s['action']} {s['key']}: {json.dumps(s['values'], ensure_ascii=False, default=str)[:300]}")
        if t.get("put_back_by"):
            print(f"  rows put back by {t['put_back_by']}")
        if t["later_transactions"]:
            print(f"  later transactions on these rows: {', '.join(t['later_transactions'][:10])}")
    for c in doc["conflicts"]:
        col = f" column {c['column']}" if c["column"] else ""
        print(f"CONFLICT {c['table']} {c['key']}{col}: undo would put {c['undo_value']!r}, a later write left "
              f"{c['later_value']!r} (kept) - {c['reason']}")
    for s in doc["stale"]:
        print(f"STALE {s['table']} {s['key']}: the binlog ends with {s['binlog_end']!r}, the target holds {s['target']!r}")
    if doc.get("done_before"):
        print(f"this transaction was undone on the target already ({doc['done_before']['applied_at']}, preview "
              f"{doc['done_before']['preview_id']}): nothing written")
    elif doc.get("applied"):
        print("applied in one transaction" + (f"; NOT as intended: {doc['verification']}" if doc["verification"] else
                                               "; every written row holds its intended image"))
    else:
        print(f"preview {doc['preview_id']} (nothing written): apply with --yes --preview {doc['preview_id']}")
