"""The Slack transport: a slack-bolt app served over HTTP (or Socket Mode), thin by design.

Every slash command and every button the application knows (`handlers.commands.SLASH_COMMANDS`,
`ACTIONS`) reaches one listener, which turns it into a Command and hands it to the dispatcher
with a `SlackReply`. Requests are verified by bolt's own signature check. Long work never runs
here: jobs go to the store and the worker process.
"""
from __future__ import annotations

import time

from flask import Flask, request
from prometheus_client import Histogram
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from handlers.commands import ACTIONS, SLASH_COMMANDS, CommandError
from handlers.dispatcher import Dispatcher, Reply
from handlers.jobstore import Job
from handlers.presenter import blocks
from handlers.presenter.answers import bad_input

ACK_SECONDS = Histogram("restore_bot_ack_seconds", "time from a Slack request's arrival to its acknowledgement")


def web_client(token: str, api_url: str) -> WebClient:
    client = WebClient(token=token, base_url=api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=5))  # honours Retry-After
    return client


class SlackPoster:
    """The reporter's Poster: cards and threads in the incident channel."""

    def __init__(self, client: WebClient, channel: str) -> None:
        self.client, self.channel = client, channel

    def post_card(self, job: Job, text: str) -> str | None:
        return self.client.chat_postMessage(channel=job.channel or self.channel, text=text, **_blocks(job))["ts"]

    def update_card(self, job: Job, ref: str, text: str) -> None:
        self.client.chat_update(channel=job.channel or self.channel, ts=ref, text=text, **_blocks(job))

    def post_thread(self, job: Job, ref: str | None, text: str) -> None:
        self.client.chat_postMessage(channel=job.channel or self.channel, thread_ts=ref, text=text)


def _blocks(job: Job) -> dict:
    card = blocks.card(job)   # a finished plan's candidates, each with its buttons
    return {"blocks": card} if card else {}


class SlackReply(Reply):
    """Answers to one person go where they typed or clicked (`where`, or bolt's `respond`); what the
    team must see (approval requests, approvals, aborts) goes to the incident channel (`channel`),
    next to the cards. (A `/restore prod` typed in a DM used to put the Approve button where no approver sees it.)"""

    def __init__(self, client: WebClient, where: str, user: str, respond=None, *, channel: str | None = None) -> None:
        super().__init__()
        self.client, self.where, self.user, self.respond = client, where, user, respond
        self.channel = channel or where

    def ephemeral(self, text: str) -> None:
        if self.respond is not None:
            self.respond(text=text, response_type="ephemeral")
        else:
            self.client.chat_postEphemeral(channel=self.where, user=self.user, text=text)

    def say(self, text: str, *, thread: tuple[str | None, str] | None = None) -> None:
        if thread is not None:
            self.client.chat_postMessage(channel=thread[0] or self.channel, thread_ts=thread[1], text=text)
        else:
            self.client.chat_postMessage(channel=self.channel, text=text)

    def approval_request(self, job: Job, text: str) -> None:
        self.job = job
        self.client.chat_postMessage(channel=self.channel, text=text, blocks=blocks.approval_request(job, text))


def build_bolt_app(settings, app: Dispatcher, client: WebClient) -> App:
    """The bolt app: every slash command and button of `app` (the dispatcher), answered through `client`."""
    bolt = App(client=client, signing_secret=settings.slack.signing_secret.reveal(),
               token_verification_enabled=False, request_verification_enabled=True)
    channel = settings.slack.channel

    def on_command(ack, command, respond):
        arrived, user = time.monotonic(), command["user_id"]
        try:
            cmd = app.parse(f"{command['command']} {command.get('text', '')}", user, "slack")
        except CommandError as exc:   # answered in the acknowledgement itself: nothing else happens
            ack(response_type="ephemeral", text=bad_input(exc, exc.usage))
            ACK_SECONDS.observe(time.monotonic() - arrived)
            return
        ack()
        ACK_SECONDS.observe(time.monotonic() - arrived)
        app.dispatch(cmd, SlackReply(client, command.get("channel_id") or channel, user, respond, channel=channel))

    def on_action(ack, body):
        ack()
        user, action = body["user"]["id"], body["actions"][0]
        where = (body.get("channel") or {}).get("id") or channel
        app.action(action["action_id"], action.get("value", ""), user, "slack",
                   SlackReply(client, where, user, channel=channel))

    for name in SLASH_COMMANDS:
        bolt.command(name)(on_command)
    for action_id in ACTIONS:
        bolt.action(action_id)(on_action)
    return bolt


def register_slack(web: Flask, bolt: App) -> None:
    """Add `POST /slack/events` (slash commands and button clicks) to `web`."""
    slack_handler = SlackRequestHandler(bolt)

    @web.post("/slack/events")
    def slack_events():
        return slack_handler.handle(request)
