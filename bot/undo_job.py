"""An undo job in the worker: its preview (a dry run), and once approved the apply of that preview.

The job runs twice. First without an approver: `restore.api.undo` as a dry run; its `Undone` goes
into the job's result and the job waits for approval with the preview on its card. Approved, it
runs again and applies exactly that preview (its id): if the target changed since, the engine
refuses and nothing is written; the card then asks for a new preview. A worker that dies during
the apply leaves the job to be run again: the apply is one transaction, and a rerun after it
committed finds the undo recorded on the target ("undone already") and writes nothing.
"""
from __future__ import annotations

from handlers import messages
from handlers.jobstore import Job, JobStore
from restore import api
from restore.errors import RestoreError
from restore.hooks import Hooks


def undo_job(settings, store: JobStore, job: Job, hooks: Hooks) -> dict:
    """The job's result: "undo" is `Undone.to_dict()`; "await_approval" after a preview."""
    target = settings.targets.get(job.target)
    if target is None or target.dsn == "sandbox":
        section = (f"clusters.{job.args['cluster']}." if job.args.get("cluster") else "") + f"targets.{job.target}"
        raise RestoreError(f"undo job {job.id}: target {job.target} is not a kept server",
                           hint=f"set [{section}] dsn in the config, then /restore undo again")
    binlogs = settings.source.binlogs
    preview = (job.result or {}).get("undo")
    if job.approver is None or preview is None:
        done = api.undo(api.UndoInput(binlogs, target.dsn, job.args["event"], dry_run=True), hooks=hooks)
        doc = done.to_dict()
        if done.done_before:   # nothing to approve: the target holds this undo's record
            return {"summary": _summary(doc, job), "undo": doc}
        return {"summary": _summary(doc, job), "undo": doc, "await_approval": True}
    try:
        # The transaction the preview found (its GTID or start), not the SPEC typed: `auto` is
        # whatever the plan chose then, and the approval was of this transaction.
        done = api.undo(api.UndoInput(binlogs, target.dsn, preview["transaction"]["id"], dry_run=False,
                                      preview=preview["preview_id"]), hooks=hooks)
    except RestoreError as exc:
        raise RestoreError(exc.message, where=exc.where, hint=_new_preview(job)) from exc
    doc = done.to_dict()
    if done.applied:
        problems = doc["verification"]
        hooks.message(messages.UNDO_VERIFY_BAD.format(n=len(problems), first=problems[0]) if problems
                      else messages.UNDO_VERIFY_OK)
        if problems:   # committed, but not as intended: the card shows the rows; the job fails
            store.update(job.id, result={"undo": doc, "summary": _summary(doc, job)})
            raise RestoreError(f"undo job {job.id}: {len(problems)} row(s) on {job.target} are not as intended "
                               f"after the apply (first: {problems[0]})", where=str(problems[0].get("table", "")),
                               hint="compare those rows by hand; the undo is recorded on the target, so it is "
                                    "not applied twice")
    return {"summary": _summary(doc, job), "undo": doc}


def _summary(doc: dict, job: Job) -> str:
    tx, pid = doc["transaction"]["id"], doc["preview_id"]
    on = job.target + (f" of cluster {job.args['cluster']}" if job.args.get("cluster") else "")
    rows = {k: sum(t["rows"][k] for t in doc["tables"]) for k in ("insert", "update", "delete")}
    if doc.get("done_before"):
        return f"Transaction {tx} was undone on {on} already; nothing written."
    if doc.get("applied"):
        return (f"Undid transaction {tx} on {on} (preview {pid}): {rows['insert']} row(s) inserted back, "
                f"{rows['update']} updated back, {rows['delete']} deleted; {len(doc['conflicts'])} conflict(s) kept.")
    return (f"Undo preview {pid} of transaction {tx} on {on}: {rows['insert']} row(s) to insert back, "
            f"{rows['update']} to update back, {rows['delete']} to delete; {len(doc['conflicts'])} conflict(s).")


def _new_preview(job: Job) -> str:
    target = ("" if job.target == "stage" else f" {job.target}") + (f" {job.args['cluster']}" if job.args.get("cluster") else "")
    return messages.UNDO_NEW_PREVIEW.format(spec=job.args.get("event"), target=target)
