"""`restore-bot stage` and `restore-bot prod`: the chat's stage and prod jobs from a shell.

They go through what chat goes through, a console session (bot.console) over the job store the
configuration names: the same handler queues the job and records it, the same gate lets a prod
restore through (a stage run of the same plan that verified OK, in that store; a second person's
approval, recorded in the audit log), and the same worker runs it. The approver is named with
`--approved-by`; a command that lacks something says what and the command to run.

A restore-bot killed while its job ran leaves the job "running" in the store: the same command run
again first resumes it, as a restarted worker does (the engine resumes from the target's record),
and reports it, instead of starting a second job (a second prod job would swap again).
"""
from __future__ import annotations

import argparse
import getpass
import json
import shlex
import sys
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:   # the job store imports SQLAlchemy and Alembic: only the commands that use it load them
    from handlers.jobstore import Job, JobStore

WAIT_SECONDS = 7 * 24 * 3600   # a job runs as long as it needs; Ctrl-C leaves it to a worker


def add_parsers(sub) -> None:
    for name, text in (("stage", "restore the configured source into the stage target and verify it "
                                 "(a job in the configured job store, as /restore stage)"),
                       ("prod", "restore into production (as /restore prod): needs a stage run of the same plan "
                                "in the job store and a second person's --approved-by")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="TOML settings file (default: $RESTORE_BOT_CONFIG)")
        p.add_argument("--user", help="who requests it (default: your login name); with an [access] list, "
                                      "an operator")
        p.add_argument("--stop-before", metavar="SPEC", help="where replay stops (default: the operators' saved "
                                                             "choice, else auto)")
        p.add_argument("--skip", action="append", default=[], metavar="SPEC",
                       help="leave out the transaction at this GTID or FILE:POS (repeatable)")
        p.add_argument("--json", action="store_true", help="print the finished job as JSON on stdout")
        add_cluster_option(p)
        if name == "stage":
            p.add_argument("--restart", action="store_true",
                           help="forget an earlier unfinished run of the plan on the stage target")
        else:
            p.add_argument("--approved-by", metavar="NAME",
                           help="the second person who approves this prod restore (not --user; with an "
                                "[access] list, an approver); recorded in the audit log")


def add_cluster_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", metavar="NAME", help="the [clusters.NAME] of the config it is for (needed when "
                                                     "the config has several)")


def cluster_settings(args: argparse.Namespace, settings=None):
    """The settings of `--config` as `--cluster` sees them; a RestoreError when the config cannot be
    read, or the cluster is missing (several configured) or unknown, naming the choices."""
    from bot.config import ConfigError, load_settings
    from restore.errors import RestoreError
    if settings is None:
        try:
            settings = load_settings(getattr(args, "config", None))
        except ConfigError as exc:
            raise RestoreError(str(exc), hint="fix that line of the config file") from None
    try:
        return settings.cluster(args.cluster)
    except KeyError:
        names = ", ".join(settings.cluster_names)
        what = f"there is no cluster {args.cluster!r}" if args.cluster else "several clusters are configured"
        raise RestoreError(f"{what} in {settings.config_path or 'the configuration'} (clusters: {names})",
                           hint=f"name one with --cluster NAME, one of: {names}") from None


def run(args: argparse.Namespace, settings) -> int:
    from bot.console import ConsoleSession, OpenAccess
    from handlers.jobstore import JobState, JobStore

    user = args.user or getpass.getuser()
    store = JobStore(settings.store)
    out = Console(file=sys.stderr if args.json else sys.stdout, width=200)
    if args.command == "prod" and not _approver_ok(args, user, store, out):
        return 2
    from restore.errors import RestoreError
    try:
        view = cluster_settings(args, settings)
    except RestoreError as exc:
        return _refuse(args, out, exc.message, exc.hint or "")
    if args.command not in view.targets and args.command == "prod":
        section = f"clusters.{args.cluster}.targets.prod" if settings.clusters else "targets.prod"
        return _refuse(args, out, "no prod target is configured",
                       f"add [{section}] dsn = \"mysql://...\" to {args.config or 'the configuration'}")
    access = settings.access if (settings.access.operators or settings.access.approvers) else OpenAccess()
    # Before the session's worker starts: the jobs whose worker is gone (it would requeue them).
    from bot.worker import pid_alive  # here: the worker's imports would slow every restore-bot start
    stale = [j.id for j in store.jobs(states=(JobState.RUNNING,), limit=100)
             if not (j.worker_pid and pid_alive(j.worker_pid))]
    with ConsoleSession(settings, store, access, user=user, console=out,
                        ask=lambda prompt: getattr(args, "approved_by", "") or "") as session:
        resumed = _resume_unfinished(session, store, out, stale, args.command)
        if resumed is not None:
            return _finished(args, resumed, out)
        job = session.run_line(_line(args))
        if job is None:
            return _refused(args, store, out)
        job = store.get(job.id)   # as the approval (run inside run_line) left it
        if job.state == JobState.AWAITING_APPROVAL:   # the approver was refused: the request must not linger
            session.run_line(f"reject {job.id}")
            return _refuse(args, out, f"{args.approved_by} may not approve {job.id} (see above); it is rejected",
                           f"ask an approver other than {user}, then run: {_again(args, approved_by='NAME')}")
        try:
            job = session.wait(job, timeout=WAIT_SECONDS)
        except KeyboardInterrupt:
            print(f"interrupted: job {job.id} stays in the job store; a worker (restore-bot worker or serve) "
                  "resumes it from the target's record", file=sys.stderr)
            return 130
    return _finished(args, job, out)


def _resume_unfinished(session, store: JobStore, out: Console, stale: list[str], kind: str) -> Job | None:
    """The `stale` jobs (their worker, an earlier restore-bot killed mid-job, is gone) go back to the
    queue and this session's worker runs them to the end. Returns the last of them of `kind`, if any."""
    session.worker.recover()
    last = None
    for job_id in reversed(stale):
        job = store.get(job_id)
        out.print(f"resuming {job.kind} job {job.id}, which a restore-bot that stopped left unfinished "
                  "(it carries on from what the target recorded)", markup=False, highlight=False)
        job = session.wait(job, timeout=WAIT_SECONDS)
        if job.kind == kind:
            last = job
    return last


def _line(args: argparse.Namespace) -> str:
    """The console line for this command: the chat's own syntax, so the same parser reads it."""
    words = [args.command]
    if getattr(args, "cluster", None):
        words += ["--cluster", args.cluster]
    if args.stop_before:
        words += ["--stop-before", args.stop_before]
    for spec in args.skip:
        words += ["--skip", spec]
    if getattr(args, "restart", False):
        words.append("--restart")
    return " ".join(shlex.quote(w) for w in words)


def _approver_ok(args: argparse.Namespace, user: str, store: JobStore, out: Console) -> bool:
    """A prod restore needs a second person: refused (and logged) without one, or with the requester."""
    if not args.approved_by:
        why = "no second approver (--approved-by)"
    elif args.approved_by == user:
        why = f"self-approval: {user} requested it and cannot approve it too"
    else:
        return True
    store.audit(user, "refused prod", None, f"{why}, on the command line")
    _refuse(args, out, f"a prod restore needs a second person's approval; {why}",
            f"ask someone else to approve it and run: {_again(args, approved_by='NAME')}")
    return False


def _refused(args: argparse.Namespace, store: JobStore, out: Console) -> int:
    """The handler refused (and said why above); say the command that gets past it."""
    last = (store.audit_log(1) or [{}])[0]
    if args.command == "prod" and last.get("action") == "refused prod" and "stage" in last.get("detail", ""):
        return _refuse(args, out, f"no stage run of this plan verified OK in the job store ({last['detail']})",
                       f"stage the same plan first: {_again(args, command='stage')}; then run this command again")
    why = last.get("detail") if str(last.get("action", "")).startswith("refused") and last.get("detail") else ""
    return _refuse(args, out, f"{args.command} was refused{': ' + why if why else ''} (the answer above says why)",
                   "act on the answer above, then run the command again")


def _refuse(args: argparse.Namespace, out: Console, message: str, hint: str) -> int:
    out.print(f"refused: {message}", markup=False, highlight=False)
    _next(out, hint)
    if args.json:
        json.dump({"ok": False, "error": {"message": message, "hint": hint}}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    return 2


def _again(args: argparse.Namespace, *, command: str | None = None, approved_by: str | None = None) -> str:
    words = ["restore-bot", command or args.command]
    if args.config:
        words += ["--config", args.config]
    if getattr(args, "cluster", None):
        words += ["--cluster", args.cluster]
    if args.user:
        words += ["--user", args.user]
    if args.stop_before:
        words += ["--stop-before", args.stop_before]
    for spec in args.skip:
        words += ["--skip", spec]
    if (command or args.command) == "prod":
        words += ["--approved-by", approved_by or getattr(args, "approved_by", None) or "NAME"]
    return " ".join(shlex.quote(w) for w in words)


def _next(out: Console, text: str) -> None:
    out.print(f"next: {text}", markup=False, highlight=False)


def _finished(args: argparse.Namespace, job: Job, out: Console) -> int:
    from handlers.jobstore import JobKind, JobState
    ok = job.state == JobState.SUCCEEDED
    if args.json:
        json.dump({"ok": ok, "job": {"id": job.id, "kind": job.kind, "state": job.state, "plan_id": job.plan_id,
                                     "requester": job.requester, "approver": job.approver,
                                     "stage_job": job.stage_job, "result": job.result, "error": job.error}},
                  sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    if ok and job.kind == JobKind.STAGE:
        _next(out, f"restore this plan into production: {_again(args, command='prod')}")
    elif not ok:
        out.print(f"{job.kind} job {job.id} {job.state}" + (f": {job.error.get('message')}" if job.error else ""),
                  markup=False, highlight=False)
    return 0 if ok else 3 if job.state == JobState.FAILED else 1
