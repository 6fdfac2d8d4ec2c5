"""Every sentence the bot says to people, in one place."""
from __future__ import annotations

USAGE = """*restore-bot* — point-in-time restore from dumps + binlog
`/restore plan [--stop-before SPEC] [--skip SPEC]` — what would be restored, and where it stops
`/restore stage [--stop-before SPEC] [--skip SPEC] [--restart]` — run the plan into the stage server and verify (`--restart`: start over instead of resuming an earlier run there)
`/restore prod` — restore production from the plan that passed stage (a second person approves)
`/restore status [JOB]` · `/restore abort [JOB]` · `/restore history`
`/restore approve JOB` · `/restore reject JOB` — answer a prod approval request
`/restore drill` — restore the newest backup + archived binlogs into a sandbox, to prove they work
`/backup now` · `/backup list` — take a base snapshot now / list them
SPEC: auto (first destructive event), end, a GTID, FILE:POS or a datetime."""

UNKNOWN_SUBCOMMAND = "I don't know `{name}`."
BAD_INPUT = "{error}\n\n{usage}"
NOT_ALLOWED = ("Sorry <@{user}>, you are not on restore-bot's operator list, so I can't {what}. "
               "Ask an operator, or have your id added to [access] in the config. (This was logged.)")
NOT_APPROVER = ("Sorry <@{user}>, only approvers may approve a prod restore. (This was logged.)")
SELF_APPROVAL = ("<@{user}>, you requested {job} yourself: a *different* approver must approve it.")
ACK = "{kind} job *{job}* queued — progress goes to the card in <#{channel}>."
ACK_CONSOLE = "{kind} job {job} queued."
BUSY_TARGET = "Target *{target}* is busy with job {job} ({state}); one restore per target at a time."
NO_STAGE = ("There is no stage run that verified OK for this plan. Run `/restore stage` first "
            "(same --stop-before/--skip), then `/restore prod`.")
NO_PROD_TARGET = "No prod target is configured: add [targets.prod] dsn = \"mysql://...\" to the config."
NO_SUCH_JOB = "There is no job {job}. `/restore history` lists recent jobs."
NO_JOB = "No job is running. `/restore history` lists recent jobs."
APPROVAL_REQUEST = ("*Prod restore requested* by <@{requester}> — job *{job}*\n"
                    "Plan {plan_id} verified on stage by job {stage_job}. {summary}\n"
                    "A different approver must approve within {minutes} minutes.")
APPROVED = "Approved by <@{user}>: prod job *{job}* starts now."
REJECTED = "Rejected by <@{user}>: prod job *{job}* will not run."
EXPIRED = "Approval window for prod job *{job}* expired after {minutes} minutes; nothing was run."
NOT_WAITING = "Job {job} is not waiting for approval (it is {state})."
ABORT_REQUESTED = "Abort requested for job *{job}*; it stops at the next safe point."
ABORT_DONE = "Job {job} already finished ({state}); nothing to abort."
HISTORY_EMPTY = "Nothing has happened yet."

CARD_TITLE = {"plan": "Plan", "stage": "Stage restore", "prod": "Prod restore", "drill": "Restore drill",
              "backup": "Backup"}
NO_KEEP = ("Backups are not configured: set [watch] source and [keep] backup_dir (and backup_databases), "
           "plus [keep] archive_dir for drills.")
BACKUP_USAGE = "`/backup now` takes a base snapshot · `/backup list` shows them"
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"

NEXT_STEP_AFTER_FAILURE = "Next: {hint}"
NEXT_STEP_AFTER_STAGE = "Next: `/restore prod` to restore production from this plan (needs a second approver)."
NEXT_STEP_AFTER_PLAN = "Next: `/restore stage` runs this plan into the stage server and verifies it."
