"""An undo job's card, for every transport: the preview with *Approve undo* / *Reject*, then the results.

An undo job keeps the engine's `Undone.to_dict()` in its result under "undo": after its preview
(the job then waits for approval) and again after the apply. The card shows, per table, the rows
to restore with a sample of decoded values, the conflicts (table, key, column, both values) and the
later transactions that touched the same rows; after the apply, the counts, the conflicts kept and
the verification, or "undone already" when the target recorded this undo before. Slack gets the
buttons as blocks, KakaoTalk quick replies with the typed forms, the console the text.
"""
from __future__ import annotations

import json

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, MarkdownTextObject, SectionBlock

from handlers import messages
from handlers.alerts import mask_literals
from handlers.commands import REJECT_ACTION, UNDO_APPROVE_ACTION
from handlers.jobstore import APPROVAL_MINUTES, Job, JobKind, JobState

SAMPLE = 3            # sample rows shown per table (the engine sends up to 5)
VALUES_CHARS = 240    # of one sample row's values
CONFLICTS = 10        # conflicts listed before "and N more"
SECTION_LIMIT = 2900  # Slack's section text takes 3000 characters


def undo_doc(job: Job) -> dict | None:
    if job.kind != JobKind.UNDO:
        return None
    return (job.result or {}).get("undo")


def waiting(job: Job) -> bool:
    """The preview is on the card and waits for *Approve undo* or *Reject*."""
    return job.kind == JobKind.UNDO and job.state == JobState.AWAITING_APPROVAL and undo_doc(job) is not None


def _cut(text: str) -> str:
    return text if len(text) <= VALUES_CHARS else text[:VALUES_CHARS - 1] + "…"


def _values(values: dict) -> str:
    return _cut(json.dumps(values, ensure_ascii=False, default=str))


def tables_text(doc: dict, *, sample: int = SAMPLE) -> list[str]:
    lines = []
    for t in doc["tables"]:
        lines.append(messages.UNDO_TABLE.format(table=t["table"], conflicts=t["conflicts"], **t["rows"]))
        lines += [messages.UNDO_SAMPLE.format(action=s["action"], key=s["key"], values=_values(s["values"]),
                                              sets=f" (sets {', '.join(s['columns'])})" if s.get("columns") else "")
                  for s in t["sample"][:sample]]
        if t["later_transactions"]:
            more = len(t["later_transactions"]) - 10
            lines.append(messages.UNDO_LATER.format(txs=", ".join(f"`{x}`" for x in t["later_transactions"][:10])
                                                    + (f" and {more} more" if more > 0 else "")))
    return lines


def conflicts_text(doc: dict) -> list[str]:
    conflicts = doc["conflicts"]
    if not conflicts:
        return [messages.UNDO_NO_CONFLICT]
    lines = [messages.UNDO_CONFLICTS.format(n=len(conflicts))]
    for c in conflicts[:CONFLICTS]:
        lines.append(messages.UNDO_CONFLICT.format(table=c["table"], key=c["key"], undo=_cut(repr(c["undo_value"])),
                                                   later=_cut(repr(c["later_value"])), reason=c["reason"],
                                                   column=f" column {c['column']}" if c.get("column") else ""))
    if len(conflicts) > CONFLICTS:
        lines.append(f"… and {len(conflicts) - CONFLICTS} more")
    return lines


def preview_text(job: Job, doc: dict) -> str:
    tx = doc["transaction"]
    lines = [messages.UNDO_PREVIEW_HEAD.format(tx=tx["id"], where=tx["where"], target=job.target,
                                               pid=doc["preview_id"])]
    # Masked as an alert's statement is: the card goes to the whole channel. (The sample rows show
    # values, which is what the preview is for; a password in a WHERE clause is not.)
    lines += [f"> {mask_literals(s)[:200]}" for s in tx.get("statements", [])[:3]]
    lines += tables_text(doc) + conflicts_text(doc)
    lines += [messages.UNDO_STALE.format(table=s["table"], key=s["key"], binlog=_cut(repr(s["binlog_end"])),
                                         target=_cut(repr(s["target"])))
              for s in doc["stale"][:5]]
    return "\n".join(lines)


def ask_text(job: Job) -> str:
    if job.args.get("guarded"):
        return messages.UNDO_ASK_TWO.format(target=job.target, requester=job.requester, minutes=APPROVAL_MINUTES)
    return messages.UNDO_ASK_ONE.format(minutes=APPROVAL_MINUTES)


def results_text(job: Job, doc: dict) -> str:
    """After the apply: counts per table, the conflicts kept, the verification; or undone already."""
    if doc.get("done_before"):
        done = doc["done_before"]
        return messages.UNDO_DONE_BEFORE.format(target=job.target, at=done["applied_at"], pid=done["preview_id"])
    counts = "; ".join(f"{t['table']} {t['rows']['insert']} inserted back, {t['rows']['update']} updated back, "
                       f"{t['rows']['delete']} deleted" for t in doc["tables"])
    lines = [messages.UNDO_APPLIED.format(target=job.target, counts=counts)]
    problems = doc.get("verification") or []
    lines.append(messages.UNDO_NOT_VERIFIED.format(n=len(problems), first=problems[0]) if problems
                 else messages.UNDO_VERIFIED)
    return "\n".join(lines + conflicts_text(doc))


def card_extra(job: Job) -> str:
    """What an undo job's card shows below its status: the preview while it waits, the results when done."""
    doc = undo_doc(job)
    if doc is None:
        return ""
    if waiting(job):
        return preview_text(job, doc) + "\n" + ask_text(job)
    if job.state == JobState.SUCCEEDED:
        return results_text(job, doc)
    if job.state in (JobState.REJECTED, JobState.EXPIRED, JobState.FAILED, JobState.ABORTED):
        return preview_text(job, doc)   # what was not applied
    return ""


def slack_blocks(job: Job, head: str) -> list[dict] | None:
    """An undo job's card as blocks: while its preview waits, the preview with *Approve undo* and
    *Reject* (value: the job id); in any other state its text. (Always blocks: chat.update keeps a
    message's earlier blocks unless given new ones, and the buttons must go once answered.)"""
    if job.kind != JobKind.UNDO:
        return None
    if not waiting(job):
        return [_section(part).to_dict() for part in _parts(head)]
    doc = undo_doc(job)
    blocks: list[Block] = [_section(head), *map(_section, _parts(preview_text(job, doc))), _section(ask_text(job)),
                           ActionsBlock(block_id=f"undo-{job.id}", elements=[
                               ButtonElement(text=messages.UNDO_APPROVE_BUTTON, action_id=UNDO_APPROVE_ACTION,
                                             value=job.id, style="primary"),
                               ButtonElement(text=messages.REJECT_BUTTON, action_id=REJECT_ACTION, value=job.id,
                                             style="danger")])]
    return [b.to_dict() for b in blocks]


def _parts(text: str, limit: int = SECTION_LIMIT, most: int = 10) -> list[str]:
    """`text` in sections of at most `limit` characters, cut at line ends (a section takes 3000)."""
    parts: list[str] = []
    for line in text.split("\n"):
        if parts and len(parts[-1]) + 1 + len(line) <= limit:
            parts[-1] += "\n" + line
        else:
            parts.append(line[:limit])
    return parts[:most]


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:SECTION_LIMIT]))


def short_text(job: Job) -> str:
    """KakaoTalk's 1000 characters: the counts and the conflicts, one sample row a table."""
    doc = undo_doc(job)
    if doc is None:
        return ""
    if not waiting(job):
        return results_text(job, doc) if job.state == JobState.SUCCEEDED else ""
    return "\n".join([f"Undo preview {doc['preview_id']} of {doc['transaction']['id']} on {job.target}:"]
                     + tables_text(doc, sample=1) + conflicts_text(doc)[:4] + [ask_text(job)])


def kakao_replies(job: Job) -> list[dict]:
    """The typed forms of *Approve undo* and *Reject* (labels take 14 characters)."""
    if not waiting(job):
        return []
    return [{"label": f"Approve {job.id}"[:14], "action": "message", "messageText": f"/restore undo approve {job.id}"},
            {"label": f"Reject {job.id}"[:14], "action": "message", "messageText": f"/restore reject {job.id}"}]
