"""The plan card's disaster candidates, and stage's verdicts, for every transport.

A finished plan job carries `plan.to_dict()` in its result; its candidates (severity, where, GTID,
time, reason, which one the plan stops before) are listed on the card. On Slack each gets two
buttons, *Stop before this one* and *Skip only this one*, whose values name the plan job and the
candidate's transaction (its GTID, else its file:pos); KakaoTalk gets quick replies that send the
typed forms (`/restore plan stop=SPEC`), the console prints the list and takes the typed forms.
"""
from __future__ import annotations

import json

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from handlers import messages
from handlers.commands import SKIP_ACTION, STOP_ACTION
from handlers.jobstore import Job, JobKind, JobState
from restore.plan.spec import coord_key

SHOWN = 20          # candidates listed on a card (Slack allows 50 blocks: 2 per candidate + the card)
SECTION_LIMIT = 2900  # Slack's section text takes 3000 characters


def plan_doc(job: Job) -> dict | None:
    if job.kind != JobKind.PLAN or job.state != JobState.SUCCEEDED:
        return None
    return (job.result or {}).get("plan")


def spec_of(cand: dict) -> str:
    """What `stop=` / `skip=` take to name the candidate's transaction."""
    return cand.get("gtid") or f"{cand['tx_file']}:{cand['tx_pos']}"


def shown(cands: list[dict], limit: int = SHOWN) -> list[tuple[int, dict]]:
    """(number, candidate) of those listed: the chosen and every non-suspect first, then suspects,
    in binlog order; numbered as in the plan's whole list."""
    numbered = list(enumerate(cands, 1))
    first = [nc for nc in numbered if nc[1].get("chosen") or nc[1].get("severity") != "suspect"][:limit]
    rest = [nc for nc in numbered if nc not in first][:max(0, limit - len(first))]
    return sorted(first + rest, key=lambda nc: nc[0])


def skippable(cand: dict, plan: dict) -> bool:
    """Only a transaction the plan replays (before its stop) can be skipped; the stop itself too
    (the plan then goes on to the next certain candidate)."""
    if cand.get("skipped"):
        return False
    if cand.get("chosen"):
        return True
    end = plan.get("end") or {}
    if not end.get("file"):
        return True
    return coord_key(cand["tx_file"], cand["tx_pos"]) < coord_key(end["file"], end["pos"])


def line(number: int, cand: dict) -> str:
    marks = (" ← *the stop*" if cand.get("chosen") else "") + (" (skipped)" if cand.get("skipped") else "")
    gtid = f" · GTID `{cand['gtid']}`" if cand.get("gtid") else ""
    return (f"{number}. *{cand['severity']}*{marks} · `{cand['file']}:{cand['pos']}`{gtid} · "
            f"{cand.get('time') or '-'} · {cand['reason'][:240]}")


def later_lines(plan: dict) -> list[str]:
    """Where the replay goes on to if it judges a stop "judged at replay" not destructive."""
    out = []
    for later in plan.get("if_judged_not_destructive") or []:
        stop = later.get("stop")
        out.append(messages.IF_NOT_DESTRUCTIVE.format(
            then=f"stops before `{stop['tx_file']}:{stop['tx_pos']}`: {stop['reason'][:200]}" if stop
            else f"replays to `{later['end']['file']}:{later['end']['pos']}`"))
    return out


def candidates_text(job: Job) -> str:
    """The list as text (console, KakaoTalk, Slack's notification text); empty when there is none."""
    plan = plan_doc(job)
    if not plan or not plan.get("candidates"):
        return ""
    cands = plan["candidates"]
    listed = shown(cands)
    lines = [messages.CANDIDATES_HEAD.format(n=len(cands))] + [line(n, c) for n, c in listed] + later_lines(plan)
    if len(cands) > len(listed):
        lines.append(messages.CANDIDATES_MORE.format(n=len(cands) - len(listed)))
    if plan.get("candidates_left_out"):
        lines.append(messages.CANDIDATES_LEFT_OUT.format(n=plan["candidates_left_out"]))
    lines.append(messages.CANDIDATE_HINT)
    return "\n".join(lines)


def verdicts_text(job: Job) -> str:
    """Stage's verdicts on the stops judged at replay (statement-form UPDATEs without WHERE)."""
    verdicts = ((job.result or {}).get("restore") or {}).get("verdicts") or []
    if job.kind != JobKind.STAGE or not verdicts:
        return ""
    return "\n".join([messages.STAGE_VERDICTS.format(n=len(verdicts))] + [verdict_line(v) for v in verdicts])


def verdict_line(v: dict) -> str:
    return f"⚖ *{v['severity']}* · `{v['where']}` (transaction `{v['transaction']}`) · {v['detail'][:300]}"


def button_value(job: Job, cand: dict) -> str:
    return json.dumps({"job": job.id, "spec": spec_of(cand), "where": f"{cand['file']}:{cand['pos']}",
                       "chosen": bool(cand.get("chosen"))}, separators=(",", ":"))


def slack_blocks(job: Job, head: str) -> list[dict] | None:
    """The card as Block Kit: `head` (the card's text), then each candidate with its two buttons.
    None when the card has no candidates (plain text will do)."""
    plan = plan_doc(job)
    if not plan or not plan.get("candidates"):
        return None
    cands = plan["candidates"]
    listed = shown(cands)
    blocks: list[Block] = [_section(head), _section(messages.CANDIDATES_HEAD.format(n=len(cands)))]
    for number, cand in listed:
        blocks.append(_section(line(number, cand)))
        value = button_value(job, cand)
        buttons = [ButtonElement(text=messages.STOP_BUTTON, action_id=STOP_ACTION, value=value)]
        if skippable(cand, plan):
            buttons.append(ButtonElement(text=messages.SKIP_BUTTON, action_id=SKIP_ACTION, value=value))
        blocks.append(ActionsBlock(block_id=f"cand-{job.id}-{number}", elements=buttons))
    more = later_lines(plan)
    if len(cands) > len(listed):
        more.append(messages.CANDIDATES_MORE.format(n=len(cands) - len(listed)))
    if plan.get("candidates_left_out"):
        more.append(messages.CANDIDATES_LEFT_OUT.format(n=plan["candidates_left_out"]))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text="\n".join(more + [messages.CANDIDATE_HINT]))]))
    return [b.to_dict() for b in blocks]


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:SECTION_LIMIT]))


def short_text(job: Job) -> str:
    """The list in a few characters a line, for KakaoTalk's 1000-character answers."""
    plan = plan_doc(job)
    if not plan or not plan.get("candidates"):
        return ""
    cands = plan["candidates"]
    lines = [messages.CANDIDATES_HEAD.format(n=len(cands))]
    for number, cand in shown(cands, 8):
        lines.append(f"{number}. {cand['severity']}{' ← the stop' if cand.get('chosen') else ''} "
                     f"{spec_of(cand)}: {cand['reason'][:70]}")
    return "\n".join(lines)


def kakao_replies(job: Job, limit: int = 8) -> list[dict]:
    """Quick replies for KakaoTalk: each sends the typed form of a button (labels take 14 characters)."""
    plan = plan_doc(job)
    if not plan:
        return []
    out = []
    on = f" {job.args['cluster']}" if (job.args or {}).get("cluster") else ""   # a named cluster's plan: the same cluster
    for number, cand in shown(plan.get("candidates") or []):
        out.append({"label": f"Stop #{number}", "action": "message",
                    "messageText": f"/restore plan{on} stop={spec_of(cand)}"})
        if skippable(cand, plan):
            out.append({"label": f"Skip #{number}", "action": "message",
                        "messageText": f"/restore plan{on} skip={spec_of(cand)}"})
    return out[:limit]
