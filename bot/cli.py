"""`restore-bot` command line: plan and restore; stage and prod through the job store, with the chat's
gate (the chat transports come in other modules). Of the engine it uses restore.api only."""
from __future__ import annotations

import argparse
import json
import sys
import time

from bot import cli_jobs, cli_undo, render
from bot.progress import ConsoleHooks
from restore import api
from restore.api import EXISTING_CHOICES, FENCE_CHOICES, SPEC_HELP, Dsn
from restore.errors import RestoreError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snapshot", action="append", metavar="FILE|DIR",
                   help="a base dump (mariadb-dump/mysqldump), or a mariadb-backup/xtrabackup directory (prepared or "
                        "not); DB=FILE for a dump taken without --databases. Repeat per dump. Without --snapshot and --binlogs: the --cluster's (or [source]'s) in --config")
    p.add_argument("--database", action="append", default=[], metavar="DB",
                   help="restore only this database of a physical backup directory (repeatable; default: every "
                        "database its files hold)")
    p.add_argument("--binlogs", metavar="DIR|DSN",
                   help="a directory of binlog files (read offline) or mysql://user:pass@host:port (read live)")
    p.add_argument("--config", help="TOML settings file (default: $RESTORE_BOT_CONFIG): where --cluster is read")
    cli_jobs.add_cluster_option(p)
    p.add_argument("--stop-before", default="auto", metavar="SPEC",
                   help="where replay stops (default auto: right before the first destructive event). " + SPEC_HELP)
    p.add_argument("--skip", action="append", default=[], metavar="SPEC",
                   help="leave out the whole transaction at this GTID or FILE:POS and go on after it (repeatable)")
    p.add_argument("--start", metavar="SPEC",
                   help="replay start (GTID or FILE:POS) for dumps that record no coordinates")
    p.add_argument("--mass-fraction", type=float, default=0.9,
                   help="a DELETE/UPDATE touching at least this share of a table is destructive (default 0.9)")
    p.add_argument("--mass-min-rows", type=int, default=10,
                   help="... and at least this many rows (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="restore-bot",
                                     description="Point-in-time restore of MySQL/MariaDB from dumps plus binlogs.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="show what a restore would do; writes nothing")
    _common(plan)
    rest = sub.add_parser("restore", help="load the snapshots, replay the binlog, verify")
    _common(rest)
    rest.add_argument("--target", required=True, metavar="DSN|sandbox",
                      help="mysql://user[:password]@host[:port][?unix_socket=PATH], or sandbox for a throwaway local server")
    rest.add_argument("--existing", choices=EXISTING_CHOICES, default="refuse",
                      help="when the target already holds a restored database: refuse (default), "
                           "keep-aside (move it to <db>_before_restore_<time>), or drop it (only if it holds no rows)")
    rest.add_argument("--restart", action="store_true",
                      help="start over: forget the checkpoint of an earlier unfinished run of this plan on the target "
                           "and move what it restored to <db>__unfinished_<time> (default: resume it)")
    rest.add_argument("--fence", choices=FENCE_CHOICES, default="refuse",
                      help="writers on a non-sandbox target: refuse (default: stop if another session uses a restored "
                           "database or holds a transaction) or lock (the --fence-user accounts are locked and their "
                           "sessions killed for the whole restore)")
    rest.add_argument("--fence-user", action="append", default=[], metavar="USER",
                      help="an application account to lock out with --fence lock (repeatable)")
    rest.add_argument("--no-target-binlog", action="store_true",
                      help="keep the restore out of the target's binlog (sql_log_bin=0): only when no replica of the "
                           "target needs the restored data")
    rest.add_argument("--skip-space-check", action="store_true",
                      help="restore even when the target's disk looks too small for it")
    rest.add_argument("--yes", action="store_true", help="do not ask before writing into a non-sandbox target")
    rest.add_argument("--batch", type=int, default=1000, help="source transactions per target commit (default 1000)")
    rest.add_argument("--load-jobs", type=_positive, metavar="N",
                      help="clients loading a dump's tables at once, one table each (default: the target's cores, "
                           "at most 8; 1: one client)")
    cli_jobs.add_parsers(sub)
    cli_undo.add_parser(sub)
    for name, text in (("serve", "run the Slack bot (HTTP on --port, or Socket Mode when SLACK_APP_TOKEN is set) and its worker"),
                       ("worker", "run only the worker process that executes queued jobs"),
                       ("console", "the chat commands in this terminal: no Slack account needed"),
                       ("watch", "follow a live binlog and alert the on-call person on destructive events")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="TOML settings file (default: $RESTORE_BOT_CONFIG)")
        if name == "serve":
            p.add_argument("--port", type=int, help="HTTP port (default 3000 or [server] port)")
        if name == "console":
            p.add_argument("--user", help="who you are in the console (default: your login name)")
        if name == "watch":
            p.add_argument("--source", help="mysql://user:pass@host:port of the server to watch (default: [watch] source)")
            cli_jobs.add_cluster_option(p)
    arch = sub.add_parser("archive", help="keep a continuous raw copy of a server's binlog files")
    arch.add_argument("--source", required=True, help="mysql://user:pass@host:port (REPLICATION SLAVE, REPLICATION CLIENT)")
    arch.add_argument("--dir", required=True, help="the archive directory (what --binlogs reads)")
    arch.add_argument("--keep-days", type=float, help="delete finished files older than this")
    arch.add_argument("--keep-size", type=int, help="delete the oldest finished files above this many bytes")
    arch.add_argument("--config", help="TOML settings file (default: $RESTORE_BOT_CONFIG): [slack] for trouble reports")
    arch.add_argument("--backup-dir", help="where the base backups are: retention keeps every file the newest "
                                           "one needs (without it, retention deletes nothing)")
    drill = sub.add_parser("drill", help="the whole incident on local throwaway servers: dumps, disaster, plan, restore, verify")
    drill.add_argument("--rounds", type=int, default=600, help="traffic rounds before the disaster (default 600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    api.sweep()  # sandbox datadirs and drill dirs whose restore-bot was killed (their owner's lock is free)
    if args.command in ("serve", "worker", "console", "watch"):
        return _service(args)
    if args.command == "archive":
        return _archive(args)
    if args.command == "undo":
        return cli_undo.run(args)
    if args.command in ("stage", "prod"):
        settings = _settings(args, 30)   # logging.WARNING: the job's cards say what happens
        return 2 if settings is None else cli_jobs.run(args, settings)
    if args.command == "drill":
        from bot import drill
        try:
            return drill.run(rounds=args.rounds)
        except RestoreError as exc:
            render.error(exc)
            return exc.exit_code
    hooks = ConsoleHooks(enabled=not args.json and sys.stderr.isatty())
    plan = None
    try:
        _sources(args)
        if args.command == "restore" and args.target != "sandbox":
            Dsn.parse(args.target, what="--target")  # a typo in it is reported before the plan pass, not after
        rules = api.DestructiveRules(fraction=args.mass_fraction, min_rows=args.mass_min_rows)
        started = time.monotonic()
        with hooks:
            planned = api.plan(api.PlanInput(args.snapshot, args.binlogs, stop=args.stop_before, skips=args.skip,
                                             start=args.start, rules=rules, databases=args.database),
                               hooks=hooks)
        plan = planned.plan
        args.plan_seconds = round(time.monotonic() - started, 3)
        if args.command == "plan":
            _out(args, {"ok": True, "plan": plan.to_dict()}, lambda: render.plan(plan))
            return 0
        return _restore(args, planned, hooks)
    except RestoreError as exc:
        doc = {"ok": False, "error": exc.to_dict(), "plan": plan.to_dict() if plan else None}
        if isinstance(exc, api.RestoreNotVerified):   # it ran to its end: its per-table report goes out too
            doc["restore"] = exc.result.to_dict()
        _out(args, doc, lambda err=exc: render.error(err))
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


def _sources(args) -> None:
    """--snapshot and --binlogs as given, else (both left out) the configured cluster's."""
    if args.snapshot and args.binlogs:
        if args.cluster:
            raise RestoreError("--cluster takes the snapshots and binlogs from the config: it does not go with "
                               "--snapshot and --binlogs", hint="leave out --cluster, or --snapshot and --binlogs")
        return
    if args.snapshot or args.binlogs:
        raise RestoreError(f"--{'binlogs' if args.snapshot else 'snapshot'} is missing",
                           hint="give both --snapshot and --binlogs, or neither to use the config's --cluster")
    source = cli_jobs.cluster_settings(args).source
    if not source.snapshots:
        raise RestoreError(f"cluster {args.cluster or 'default'} names no snapshots",
                           hint="set snapshots in its [clusters.NAME] (or [source]) section, or pass --snapshot")
    args.snapshot, args.binlogs = list(source.snapshots), source.binlogs


def _archive(args) -> int:
    import logging
    import signal

    from bot.watch import alert_client, trouble_reporter
    # Warnings only: each trouble is one warning; the retries after it are logged at INFO.
    settings = _settings(args, logging.WARNING)
    if settings is None:
        return 2
    # With Slack settings, a gap or an unreachable source is said in the incident channel too.
    report = trouble_reporter(alert_client(settings), settings.slack.channel)
    try:
        archiver = api.Archiver(Dsn.parse(args.source, what="--source"), args.dir, keep_days=args.keep_days,
                            keep_bytes=args.keep_size, backup_dir=args.backup_dir,
                            on_trouble=lambda text: report(f"archive: {text}"))
    except RestoreError as exc:
        render.error(exc)
        return exc.exit_code
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"archiving {archiver.dsn.redacted()} into {args.dir}", file=sys.stderr, flush=True)
    try:
        archiver.run_forever()
    except KeyboardInterrupt:
        archiver.stop()
    return 0


def _settings(args, log_level: int):
    """Logging set up, and the settings of `--config`; None (said on stderr) when they are bad."""
    import logging

    from bot.config import ConfigError, load_settings
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        print(f"restore-bot: {exc}", file=sys.stderr)
        return None


def _service(args) -> int:
    import logging

    settings = _settings(args, logging.INFO)
    if settings is None:
        return 2
    if args.command == "worker":
        from bot.serve import run_worker
        return run_worker(settings)
    if args.command == "watch":
        from bot.watch import run_watch
        try:
            return run_watch(settings, args.source, args.cluster)
        except RestoreError as exc:
            render.error(exc)
            return exc.exit_code
    if args.command == "serve":
        from bot.serve import run_serve
        return run_serve(settings, port=args.port)
    from bot.console import ConsoleSession, OpenAccess
    from handlers.jobstore import JobStore
    access = settings.access if (settings.access.operators or settings.access.approvers) else OpenAccess()
    with ConsoleSession(settings, JobStore(settings.store), access, user=args.user) as session:
        return session.repl()


def _restore(args, planned: api.Planned, hooks) -> int:
    if args.target == "sandbox":
        return _run(args, planned, None, hooks)
    target = Dsn.parse(args.target, what="--target")
    if args.fence == "lock" and not args.fence_user:
        raise RestoreError("--fence lock needs the application's accounts to lock out",
                           hint="add --fence-user APP_USER for each account the application logs in with")
    if not args.yes:
        if not sys.stdin.isatty():
            raise RestoreError(f"refusing to write into {target.redacted()} without confirmation",
                               hint="pass --yes to confirm (or use --target sandbox)")
        answer = input(f"Restore {', '.join(sorted(planned.plan.databases))} into {target.redacted()}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing written", file=sys.stderr)
            return 1
    return _run(args, planned, target, hooks)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _run(args, planned: api.Planned, target: Dsn | None, hooks) -> int:
    where = api.StageTarget(target, existing=args.existing, restart=args.restart, fence=args.fence,
                            fence_users=tuple(args.fence_user), batch=args.batch,
                            log_replay=not args.no_target_binlog, space_check=not args.skip_space_check,
                            load_jobs=args.load_jobs)
    with hooks:
        result = api.stage(planned, where, hooks=hooks,
                           sandbox_note="sandbox server started on port {port}; it is removed when this command ends"
                           ).result
    result.phases.insert(0, {"phase": "plan", "seconds": args.plan_seconds})  # the pass that found the stop
    doc = {"ok": result.ok, "plan": planned.plan.to_dict(), "restore": result.to_dict()}
    _out(args, doc, lambda: render.restore(result, sandbox=target is None))
    return 0 if result.ok else 3


def _out(args, doc: dict, human) -> None:
    if args.json:
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        human()


if __name__ == "__main__":
    sys.exit(main())
