"""Slack Block Kit for what the bot posts with buttons, built with `slack_sdk.models.blocks`.

(The plan card's candidate list is in `plan_card.slack_blocks`; alerts build theirs in `handlers.alerts`.)
"""
from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock

from handlers import messages
from handlers.commands import APPROVE_ACTION, REJECT_ACTION
from handlers.jobstore import Job
from handlers.presenter.jobs import card_text
from handlers.presenter import undo_card
from handlers.presenter.plan_card import slack_blocks


def approval_request(job: Job, text: str) -> list[dict]:
    """A prod approval request: its text, then *Approve* and *Reject*, whose value is the job id."""
    blocks = [SectionBlock(text=MarkdownTextObject(text=text)),
              ActionsBlock(block_id=f"approval-{job.id}", elements=[
                  ButtonElement(text=messages.APPROVE_BUTTON, action_id=APPROVE_ACTION, value=job.id, style="primary"),
                  ButtonElement(text=messages.REJECT_BUTTON, action_id=REJECT_ACTION, value=job.id, style="danger")])]
    return [b.to_dict() for b in blocks]


def card(job: Job) -> list[dict] | None:
    """A job's card as blocks: a finished plan's candidates, or an undo's preview, with their buttons;
    None: its text will do."""
    head = card_text(job, candidates=False)
    return slack_blocks(job, head) or undo_card.slack_blocks(job, head)
