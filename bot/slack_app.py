"""The Slack transport: a slack-bolt app served over HTTP (or Socket Mode), thin by design.

Raw payload in, one Command out to the platform-neutral handler, replies back through
`SlackReplier`. Requests are verified by bolt's own signature check. Long work never runs
here: jobs go to the store and the worker process.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from handlers.restore import RestoreHandler

from handlers import messages
from handlers.commands import Command, CommandError, parse
from handlers.jobstore import ACTIVE, Job, JobStore
from handlers.plan_card import SKIP_ACTION, STOP_ACTION, slack_blocks
from bot.reporter import card_text

log = logging.getLogger("restore-bot.slack")

ACK_SECONDS = Histogram("restore_bot_ack_seconds", "time from a Slack request's arrival to its acknowledgement")
ALERT_SECONDS = Histogram("restore_bot_alert_seconds", "time from a destructive commit to the alert's post")
REQUESTS = Counter("restore_bot_requests_total", "chat requests by subcommand", ["command"])
JOBS = Gauge("restore_bot_jobs", "jobs by kind and state/phase", ["kind", "state", "phase"])
REPLAY_RATE = Gauge("restore_bot_replay_rows_per_second", "replay speed of running jobs", ["job"])


def web_client(token: str, api_url: str) -> WebClient:
    client = WebClient(token=token, base_url=api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=5))  # honours Retry-After
    return client


class SlackPoster:
    """Cards and threads in the incident channel."""

    def __init__(self, client: WebClient, channel: str) -> None:
        self.client, self.channel = client, channel

    def post_card(self, job: Job, text: str) -> str | None:
        return self.client.chat_postMessage(channel=job.channel or self.channel, text=text,
                                            **self._blocks(job))["ts"]

    def update_card(self, job: Job, ref: str, text: str) -> None:
        self.client.chat_update(channel=job.channel or self.channel, ts=ref, text=text, **self._blocks(job))

    @staticmethod
    def _blocks(job: Job) -> dict:
        """A finished plan's card: its candidates, each with *Stop before this one* / *Skip only this one*."""
        blocks = slack_blocks(job, card_text(job, candidates=False))
        return {"blocks": blocks} if blocks else {}

    def post_thread(self, job: Job, ref: str | None, text: str) -> None:
        self.client.chat_postMessage(channel=job.channel or self.channel, thread_ts=ref, text=text)


class SlackReplier:
    """Answers to one person go where they typed or clicked (`channel`); what the team must see —
    approval requests, approvals, aborts — goes to the incident channel (`announce`), next to the
    cards. (A `/restore prod` typed in a DM used to put the Approve button where no approver sees it.)
    """

    def __init__(self, client: WebClient, channel: str, user: str, respond=None, *,
                 announce: str | None = None) -> None:
        self.client, self.channel, self.user, self.respond = client, channel, user, respond
        self.announce = announce or channel

    def ephemeral(self, text: str) -> None:
        if self.respond is not None:
            self.respond(text=text, response_type="ephemeral")
        else:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text)

    def say(self, text: str) -> None:
        self.client.chat_postMessage(channel=self.announce, text=text)

    def approval_request(self, job: Job, text: str) -> None:
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": f"approval-{job.id}", "elements": [
                {"type": "button", "action_id": "approve_prod", "style": "primary", "value": job.id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "reject_prod", "style": "danger", "value": job.id,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ]},
        ]
        self.client.chat_postMessage(channel=self.announce, text=text, blocks=blocks)


def build_bolt_app(settings, store: JobStore, handler: RestoreHandler, client: WebClient, *,
                   oncall=None, backups=None, alerts=None) -> App:
    """`oncall`, `backups` (handlers) and `alerts` (AlertStore) add /oncall, /backup and the alert buttons."""
    app = App(client=client, signing_secret=settings.slack.signing_secret.reveal(),
              token_verification_enabled=False, request_verification_enabled=True)
    channel = settings.slack.channel

    @app.command("/restore")
    def on_restore(ack, command, respond):
        arrived = time.monotonic()
        user = command["user_id"]
        try:
            cmd = parse(command.get("text", ""), user, "slack")
        except CommandError as exc:
            ack(response_type="ephemeral", text=messages.BAD_INPUT.format(error=exc, usage=messages.USAGE))
            ACK_SECONDS.observe(time.monotonic() - arrived)
            REQUESTS.labels("invalid").inc()
            return
        ack()
        ACK_SECONDS.observe(time.monotonic() - arrived)
        REQUESTS.labels(cmd.name).inc()
        cmd = replace(cmd, origin="slack", extra={"reply": {"response_url": command.get("response_url")}})
        handler.handle(cmd, SlackReplier(client, command.get("channel_id") or channel, user, respond,
                                         announce=channel))

    def on_button(name: str):
        def answer(ack, body, respond):
            ack()
            user = body["user"]["id"]
            job_id = body["actions"][0]["value"]
            REQUESTS.labels(name).inc()
            chan = (body.get("channel") or {}).get("id") or channel
            handler.handle(Command(name, user, job=job_id, origin="slack"),
                           SlackReplier(client, chan, user, announce=channel))
        return answer

    app.action("approve_prod")(on_button("approve"))
    app.action("reject_prod")(on_button("reject"))

    def on_candidate(action: str):
        """A plan card's *Stop before this one* / *Skip only this one*: a new plan with that choice."""
        def answer(ack, body):
            ack()
            user = body["user"]["id"]
            REQUESTS.labels(f"candidate_{action}").inc()
            chan = (body.get("channel") or {}).get("id") or channel
            try:
                value = json.loads(body["actions"][0]["value"])
            except (ValueError, KeyError):
                log.warning("a candidate button with an unreadable value")
                return
            handler.choose(user, value["job"], action, value["spec"],
                           SlackReplier(client, chan, user, announce=channel),
                           where=value.get("where", ""), chosen=bool(value.get("chosen")))
        return answer

    app.action(STOP_ACTION)(on_candidate("stop"))
    app.action(SKIP_ACTION)(on_candidate("skip"))

    def simple_command(name: str, target):
        def answer(ack, command, respond):
            arrived = time.monotonic()
            ack()
            ACK_SECONDS.observe(time.monotonic() - arrived)
            REQUESTS.labels(name).inc()
            user = command["user_id"]
            target(command.get("text", ""), user,
                   SlackReplier(client, command.get("channel_id") or channel, user, respond, announce=channel))
        return answer

    if oncall is not None:
        app.command("/oncall")(simple_command("oncall", oncall.handle))
    if backups is not None:
        app.command("/backup")(simple_command("backup", lambda text, user, reply: backups.handle(text, user, reply, "slack")))

    if alerts is not None:
        @app.action("alert_ack")
        def on_ack(ack, body):
            ack()
            user, key = body["user"]["id"], body["actions"][0]["value"]
            REQUESTS.labels("alert_ack").inc()
            info = alerts.get(key)
            if info and alerts.ack(key, user):
                store.audit(user, "acknowledged alert", None, info["reason"])
                client.chat_postMessage(channel=info["channel"] or channel, thread_ts=info["ts"],
                                        text=f"✋ Acknowledged by <@{user}>.")

        def decided(action: str):
            """*Expected* / *This is the incident*: recorded for later plans; the alert counts as handled."""
            def answer(ack, body):
                ack()
                user, key = body["user"]["id"], body["actions"][0]["value"]
                REQUESTS.labels(action).inc()
                chan = (body.get("channel") or {}).get("id") or channel
                reply = SlackReplier(client, chan, user, announce=channel)
                info = alerts.get(key)
                event = (info or {}).get("event")
                if not event:
                    reply.ephemeral(messages.ALERT_UNKNOWN)
                    return
                if action == "alert_expected":
                    if not handler.mark_expected(user, event, info["reason"], reply):
                        return
                    text = messages.ALERT_EXPECTED.format(user=user, tx=f"{event['tx_file']}:{event['tx_pos']}",
                                                          gtid=f", GTID {event['gtid']}" if event.get("gtid") else "")
                    alerts.mark(key, "expected", user)
                else:
                    spec = handler.mark_incident(user, event, info["reason"], reply)
                    if spec is None:
                        return
                    text = messages.ALERT_INCIDENT.format(user=user, spec=spec)
                    alerts.mark(key, "incident", user)
                client.chat_postMessage(channel=info["channel"] or channel, thread_ts=info["ts"], text=text)
            return answer

        app.action("alert_expected")(decided("alert_expected"))
        app.action("alert_incident")(decided("alert_incident"))

        @app.action("alert_plan")
        def on_plan(ack, body, respond):
            ack()
            user, spec = body["user"]["id"], body["actions"][0]["value"]
            REQUESTS.labels("alert_plan").inc()
            chan = (body.get("channel") or {}).get("id") or channel
            handler.handle(Command("plan", user, stop_before=spec, origin="slack", chosen=True),
                           SlackReplier(client, chan, user, announce=channel))
    return app


def build_http(bolt: App | None, store: JobStore) -> Flask:
    """`bolt` is None when Slack is not configured (a Kakao-only bot)."""
    web = Flask("restore-bot")
    if bolt is not None:
        slack_handler = SlackRequestHandler(bolt)

        @web.post("/slack/events")
        def slack_events():
            return slack_handler.handle(request)

    @web.get("/healthz")
    def healthz():
        store.jobs(limit=1)  # the store answers: we can take requests
        return {"ok": True}

    @web.get("/metrics")
    def metrics():
        JOBS.clear()
        REPLAY_RATE.clear()
        for job in store.jobs(limit=200):
            JOBS.labels(job.kind, job.state, job.phase or "-").inc()
            if job.state in ACTIVE and job.phase == "replay":
                REPLAY_RATE.labels(job.id).set((job.progress or {}).get("rate", 0))
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return web
