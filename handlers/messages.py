"""Every sentence the bot says to people, in one place."""
from __future__ import annotations

USAGE = """*restore-bot* — point-in-time restore from dumps + binlog
`/restore plan [stop=SPEC] [skip=SPEC ...]` — what would be restored, the disaster candidates, and where it stops
`/restore stage [stop=SPEC] [skip=SPEC ...] [--restart]` — run the plan into the stage server and verify (`--restart`: start over instead of resuming an earlier run there)
`/restore prod [stop=SPEC] [skip=SPEC ...]` — restore production from the plan that passed stage (a second person approves)
`/restore status [JOB]` · `/restore abort [JOB]` · `/restore history`
`/restore approve JOB` · `/restore reject JOB` — answer a prod approval request
`/restore choice [clear] [CLUSTER]` — the stop and skips chosen with the plan card's or an alert's buttons (used when a command names none) / forget them
`/restore undo SPEC [prod]` — put back what one DELETE/UPDATE transaction (SPEC: its GTID, FILE:POS, or auto) destroyed, in place on the stage target (or prod), keeping later writes: a preview card first, applied when someone clicks *Approve undo* (on prod: a second person)
`/restore drill` — restore the newest backup + archived binlogs into a sandbox, to prove they work
`/restore clusters` — per cluster: newest snapshot, archived binlogs and their lag, the watcher, the last drill
`/backup now` · `/backup list` — take a base snapshot now / list them
`/oncall` · `/oncall set @user` — who is on call / hand it over
SPEC: auto (first certain disaster candidate), end, a GTID, FILE:POS or a datetime; skip= takes a GTID or FILE:POS and repeats.
With several clusters configured, name one right after the subcommand: `/restore plan billing`, `/restore stage billing stop=SPEC`, `/restore undo SPEC prod billing`, `/restore drill billing`, `/backup now billing`; `cluster=NAME` or `--cluster NAME` anywhere work too (a cluster's name never reads as a SPEC, a job id, stage or prod).
(`--stop-before SPEC` and `--skip SPEC` work too.)"""

UNKNOWN_SUBCOMMAND = "I don't know `{name}`."
BAD_INPUT = "{error}\n\n{usage}"
NOT_ALLOWED = ("Sorry <@{user}>, you are not on restore-bot's operator list, so I can't {what}. "
               "Ask an operator, or have your id added to [access] in the config. (This was logged.)")
OPERATORS_ONLY = {   # what NOT_ALLOWED says a person could not do, by command
    "plan": "start a plan job", "stage": "start a stage job", "drill": "start a drill job",
    "prod": "request a prod restore", "abort": "abort a job", "choice clear": "clear the saved choice",
    "choose stop": "change the plan", "choose skip": "change the plan",
    "alert expected": "mark an event expected", "alert incident": "mark the incident",
    "backup now": "take a backup", "oncall set": "change who is on call", "undo": "start an undo",
}
NOT_APPROVER = ("Sorry <@{user}>, only approvers may approve a prod restore. (This was logged.)")
SELF_APPROVAL = ("<@{user}>, you requested {job} yourself: a *different* approver must approve it.")
ACK = "{kind} job *{job}* queued — progress goes to the card in <#{channel}>."
ACK_CONSOLE = "{kind} job {job} queued."
BUSY_TARGET = "Target *{target}* is busy with job {job} ({state}); one restore per target at a time."
NO_STAGE = ("There is no stage run that verified OK for this plan. Run `/restore stage` first "
            "(same stop= and skip=), then `/restore prod`.")
NO_STAGE_ARGS = "This plan: {args}. (Marking an event Expected changes the plan too: stage it again.)"

# The operators' choice: the plan card's and the alerts' buttons
CHOICE_STOP_AUTO = "the bot stops before the first certain candidate"
CHOICE_STOP = "stop before `{stop}`"
CHOICE_SKIPS = "; skip {skips}"
CHOSE_STOP = "stop before {where} (a candidate of plan {job})"
CHOSE_SKIP = "skip only {where} (a candidate of plan {job})"
CHOSE_INCIDENT = "this is the incident: {reason}"
CHOICE_MADE = ("<@{user}> chose: {why}. Plans, stage and prod that name no stop or skips now {what}. "
               "A new plan follows.")
CHOICE_APPLIED = ("Using the choice <@{user}> made ({why}): {what}. Type `stop=SPEC`/`skip=SPEC` "
                  "(or `stop=auto`) to decide otherwise; `/restore choice clear` forgets it.")
CHOICE_SHOW = "Saved choice, by <@{user}> ({why}): {what}."
CHOICE_NONE = "No saved choice: plans stop before the first certain candidate unless told otherwise."
CHOICE_CLEARED = "<@{user}> cleared the saved choice: plans stop before the first certain candidate again."
EXPECTED_LINE = "Expected (never an automatic stop): {tx}{gtid}, marked by <@{user}>: {reason}"

# Alert buttons
ALERT_EXPECTED = ("✅ <@{user}> marked this *expected*: later plans list it as expected and do not stop "
                  "there by themselves (transaction {tx}{gtid}).")
ALERT_INCIDENT = ("🎯 <@{user}> marked this *the incident*: `/restore plan`, `stage` and `prod` without a stop "
                  "of their own now stop right before it (`{spec}`). *Plan restore* shows that plan now.")
ALERT_UNKNOWN = "I have no record of that alert any more; use `/restore plan stop=SPEC` with its GTID or file:pos."

# The plan card
CANDIDATES_HEAD = "*Disaster candidates* ({n}):"
CANDIDATES_MORE = "… and {n} more (not shown: type `/restore plan stop=SPEC` or `skip=SPEC`)"
CANDIDATES_LEFT_OUT = "… and {n} more suspects the plan did not list"
IF_NOT_DESTRUCTIVE = "If the replay judges that stop not destructive, it goes on and {then}"
CANDIDATE_HINT = "Type `/restore plan stop=SPEC` or `skip=SPEC` with a candidate's GTID or file:pos to choose."
STOP_BUTTON = "Stop before this one"
SKIP_BUTTON = "Skip only this one"
PROD_VERDICTS = "the rebuild applies stage {stage}'s {n} verdict(s) on the stops judged at replay, as they were"
STAGE_VERDICTS = "Judged on the stage server at replay ({n}); prod uses these verdicts:"
NO_PROD_TARGET = "No prod target is configured: add [targets.prod] dsn = \"mysql://...\" to the config."
NO_SUCH_JOB = "There is no job {job}. `/restore history` lists recent jobs."
NO_JOB = "No job is running. `/restore history` lists recent jobs."
APPROVAL_REQUEST = ("*Prod restore requested* by <@{requester}> — job *{job}*\n"
                    "Plan {plan_id} verified on stage by job {stage_job}. {summary}\n"
                    "A different approver must approve within {minutes} minutes.")
APPROVED = "Approved by <@{user}>: prod job *{job}* starts now."
REJECTED = "Rejected by <@{user}>: prod job *{job}* will not run."
EXPIRED = "Approval window for {kind} job *{job}* expired after {minutes} minutes; nothing was run."
NOT_WAITING = "Job {job} is not waiting for approval (it is {state})."
ABORT_REQUESTED = "Abort requested for job *{job}*; it stops at the next safe point."
ABORT_DONE = "Job {job} already finished ({state}); nothing to abort."
HISTORY_EMPTY = "Nothing has happened yet."

CARD_TITLE = {"plan": "Plan", "stage": "Stage restore", "prod": "Prod restore", "drill": "Restore drill",
              "backup": "Backup", "undo": "Undo"}

# /restore undo: its preview card, approval and results
UNDO_NO_TARGET = ("Undo writes into a kept server, and target *{target}* is {what}: set [targets.{target}] dsn = "
                  "\"mysql://...\" in the config (undo never runs into a throwaway sandbox), or name production: "
                  "`/restore undo SPEC prod`.")
UNDO_SPEC_HELP = ("undo takes the transaction's GTID (0-1-113680, uuid:n), the FILE:POS of any of its events "
                  "(binlog.000002:4711: an alert and `/restore plan` list them), or auto (the plan's chosen candidate)")
UNDO_PREVIEW_HEAD = "*Undo preview* of transaction `{tx}` at `{where}` on *{target}* — preview `{pid}`; nothing written yet"
UNDO_TABLE = ("• *{table}*: {insert} to insert back, {update} to update back, {delete} to delete, "
              "{already} already as before; {conflicts} conflict(s)")
UNDO_SAMPLE = "    {action} {key}{sets}: {values}"
UNDO_LATER = "    later transactions on these rows: {txs}"
UNDO_CONFLICT = ("⚠ *conflict* {table} {key}{column}: the undo would put {undo}, a later write left {later} "
                 "(kept) — {reason}")
UNDO_STALE = ("⚠ {table} {key}: the binlog ends with {binlog}, the target holds {target}: the apply will be "
              "refused; read the binlog again and run a new preview")
UNDO_ASK_ONE = "*Approve undo* applies it in one transaction; *Reject* writes nothing. Approval within {minutes} minutes."
UNDO_ASK_TWO = ("*Approve undo* applies it in one transaction — {target} is production: a *different* approver "
                "than <@{requester}> must approve, within {minutes} minutes; *Reject* writes nothing.")
UNDO_DONE_BEFORE = ("Undone already on {target} ({at}, preview `{pid}`): this transaction's undo is recorded there, "
                    "nothing was written now.")
UNDO_APPLIED = "Undone on {target} in one transaction: {counts}."
UNDO_VERIFIED = "Verified: every written row holds its intended image (before-image plus kept later writes)."
UNDO_NOT_VERIFIED = "NOT as intended after the apply ({n} row(s)): {first}"
UNDO_NO_CONFLICT = "No conflicts."
UNDO_CONFLICTS = "{n} conflict(s), kept as the later writes left them:"
UNDO_WAITING = "preview ready, waiting for approval"
UNDO_PREVIEW_READY = "⏸ preview `{pid}` ready: waiting for *Approve undo* or *Reject* on the card"
UNDO_VERIFY_OK = "✓ verify: every written row holds its intended image"
UNDO_VERIFY_BAD = "✗ verify: {n} row(s) NOT as intended: {first}"
UNDO_NEW_PREVIEW = "nothing was written; run `/restore undo {spec}{target}` for a new preview, then approve that one"
UNDO_APPROVE_BUTTON = "Approve undo"
UNDO_APPROVED = "Approved by <@{user}>: undo job *{job}* applies preview `{pid}` now."
UNDO_REJECTED = "Rejected by <@{user}>: undo job *{job}* writes nothing."
NOT_APPROVER_UNDO = "Sorry <@{user}>, only approvers may approve an undo. (This was logged.)"
NO_KEEP = ("Backups are not configured: set [watch] source and [keep] backup_dir (and backup_databases), "
           "plus [keep] archive_dir for drills.")
BACKUP_USAGE = ("`/backup now` takes a base snapshot · `/backup list` shows them (with several clusters: "
                "`/backup now NAME`, `/backup list NAME`)")
CLUSTER_MISSING = "Several clusters are configured: name one, e.g. `/restore plan NAME` (choices: {choices})."
CLUSTER_UNKNOWN = "There is no cluster `{name}` (choices: {choices})."
UNDO_WORDS = " After SPEC, `/restore undo` takes the target, stage or prod, then the cluster's name."
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"

NEXT_STEP_AFTER_FAILURE = "Next: {hint}"
NEXT_STEP_AFTER_STAGE = "Next: `/restore prod` to restore production from this plan (needs a second approver)."
NEXT_STEP_AFTER_PLAN = "Next: `/restore stage` runs this plan into the stage server and verifies it."

# /backup
BACKUP_QUEUED = "Backup job {job} queued."
NO_BACKUPS = "No backups yet: `/backup now` takes one."
NEWEST_BACKUP_UNREADABLE = ("⚠ the newest backup {name} cannot be restored: take a new one with `/backup now`, "
                            "then move the damaged file out of the backup directory")
SOME_BACKUPS_UNREADABLE = "⚠ the dumps marked UNREADABLE cannot be restored: move them out of the backup directory"

# /oncall and the alerts' acknowledge button
ONCALL_USAGE = "`/oncall` shows who is on call · `/oncall set @user` hands it over"
ONCALL_NOW = "On call now: {current}. Weekly rotation: {rotation}."
ONCALL_NO_ROTATION = "none configured"
ONCALL_SET = "{who} is on call now (set by {user})."
ALERT_ACKED = "✋ Acknowledged by <@{user}>."

# The prod approval request's buttons
APPROVE_BUTTON = "Approve"
REJECT_BUTTON = "Reject"

# KakaoTalk: one answer per request, then at most one callback
KAKAO_ACK = "{kind} job {job} queued; `/restore status {job}` shows how it is doing."
KAKAO_ACK_CALLBACK = "{kind} job {job} queued — working on it; I answer here with the outcome within a minute."
KAKAO_STILL_RUNNING = "Job {job} is not done yet after {seconds} s:\n{status}\n`/restore status {job}` for more."
KAKAO_APPROVE_HINT = "A different approver sends `/restore approve {job}` (or `/restore reject {job}`)."
KAKAO_LABELS = {"status": "Status {job}", "abort": "Abort {job}", "approve": "Approve {job}", "reject": "Reject {job}"}
CONSOLE_UNDO_PROMPT = "Name of the operator approving undo {job} (empty rejects): "

CONSOLE_GREETING = ("restore-bot console — type `help`, `plan`, `stage`, `prod`, `status`, `history`, `backup list`, "
                    "`oncall`; `plan stop=SPEC skip=SPEC` chooses among the candidates a plan lists; `undo SPEC` "
                    "undoes one DELETE/UPDATE in place; Ctrl-D quits")
CONSOLE_APPROVER_PROMPT = "Second operator's name to approve {job} (empty rejects): "
NOT_HERE = "`{name}` is not available here: it needs settings this process did not load (use `restore-bot serve`)."
