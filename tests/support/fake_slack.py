"""A local fake of Slack's Web API, and requests signed the way Slack signs them.

`FakeSlack` is a stdlib HTTP server on 127.0.0.1 (random port, own thread). Give the bot
`SLACK_API_URL=fake.api_url` (`http://127.0.0.1:PORT/api/`). It answers

- `chat.postMessage`   ok, a unique `ts`, the channel echoed back
- `chat.update`        ok, the same `ts` and channel
- `chat.postEphemeral` ok, a `message_ts`
- `auth.test`          ok, a bot user id
- any other method     ok (recorded all the same)
- `/response_url/<id>` what bolt's `respond()` posts to

and records every call (method, parsed JSON or form body, headers, time) thread-safely.
`fake.rate_limit("chat.update", 3)` answers the next 3 calls of that method with HTTP 429 and
`Retry-After: 1`, the way Slack does when a method's rate limit is exceeded. Connections are
kept alive (HTTP/1.1); `FakeSlack(idle_timeout=s)` closes one idle that long, as servers do.

`SlackSigner` builds slash-command and button requests exactly as Slack sends them:
`X-Slack-Request-Timestamp` and `X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")`.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT_USER = "UBOT0001"


@dataclass
class Call:
    method: str                 # "chat.postMessage", ..., or "response_url"
    body: dict                  # parsed JSON or form body
    headers: dict[str, str]
    at: float                   # time.time() when it arrived
    path: str = ""
    status: int = 200           # what the fake answered
    peer: tuple = ()            # the client's (host, port): one port for calls over one kept-alive connection
    wire_at: float | None = None  # when its first bytes reached the fake's socket (kernel clock; Linux)
    answer: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """Everything a person would read in this call: text plus any block texts."""
        parts = [str(self.body.get("text") or "")]
        blocks = self.body.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                parts.append(blocks)
                blocks = None
        if blocks:
            parts.append(json.dumps(blocks, ensure_ascii=False))
        return "\n".join(p for p in parts if p)

    @property
    def channel(self) -> str | None:
        return self.body.get("channel")

    @property
    def thread_ts(self) -> str | None:
        return self.body.get("thread_ts")

    @property
    def ts(self) -> str | None:
        return self.answer.get("ts") or self.body.get("ts")


class FakeSlack:
    def __init__(self, *, idle_timeout: float | None = None) -> None:
        self.idle_timeout = idle_timeout  # close a kept-alive connection idle this long, as servers do
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._limits: dict[str, int] = {}
        self._retry_after = "1"
        self._failures: dict[str, int] = {}
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms wait for an ACK
            timeout = fake.idle_timeout
            wire_at: float | None = None

            def setup(self) -> None:
                super().setup()
                _stamp_arrivals(self.connection)

            def handle_one_request(self) -> None:
                try:
                    self.wire_at = _arrival(self.connection)
                except TimeoutError:  # idle too long: close, as handle_one_request itself would
                    self.close_connection = True
                    return
                super().handle_one_request()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        _stamp_arrivals(self._server.socket)  # accepted sockets inherit it: a new connection's first request too
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, key: object) -> str:
        return f"{self.base_url}/response_url/{key}"

    # -- control ---------------------------------------------------------------------------
    def rate_limit(self, method: str, times: int, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and Retry-After: `retry_after`."""
        with self._lock:
            self._limits[method] = self._limits.get(method, 0) + times
            self._retry_after = str(retry_after)

    def fail(self, method: str, times: int) -> None:
        """Answer the next `times` calls of `method` with HTTP 200 and {"ok": false, "error": "fatal_error"}."""
        with self._lock:
            self._failures[method] = self._failures.get(method, 0) + times

    def pending_limits(self, method: str) -> int:
        with self._lock:
            return self._limits.get(method, 0)

    # -- queries ---------------------------------------------------------------------------
    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def mark(self) -> int:
        """An index into the record; pass it as `since=` to see only later calls."""
        with self._lock:
            return len(self.calls)

    def find(self, method: str | None = None, *, since: int = 0, status: int | None = 200,
             text: str | None = None, channel: str | None = None, path: str | None = None) -> list[Call]:
        out = []
        for c in self.snapshot()[since:]:
            if method is not None and c.method != method:
                continue
            if status is not None and c.status != status:
                continue
            if text is not None and text not in c.text:
                continue
            if channel is not None and c.channel != channel:
                continue
            if path is not None and c.path != path:
                continue
            out.append(c)
        return out

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "a Slack call"):
        """Wait until predicate(list of calls) returns something truthy; return it. The predicate
        runs without the fake's lock held, so it may call `find()` or `snapshot()` itself."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                calls = list(self.calls)
            got = predicate(calls)
            if got:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls so far:\n"
                                     + self.describe(calls[-30:]))
            with self._changed:
                if len(self.calls) == len(calls):  # nothing new since the look: sleep until there is
                    self._changed.wait(min(left, 0.5))

    @staticmethod
    def describe(calls: list[Call], width: int | None = 300) -> str:
        lines = []
        for c in calls:
            extra = f" thread_ts={c.thread_ts}" if c.thread_ts else ""
            ts = f" ts={c.ts}" if c.ts else ""
            where = c.path if c.method == "response_url" else f"channel={c.channel}"
            text = c.text if width is None else c.text[:width]
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(c.at))} {c.method} [{c.status}] "
                         f"{where}{ts}{extra}: {text!r}")
        return "\n".join(lines)

    # -- serving ---------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body: dict
        if ctype == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
        else:
            body = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace"),
                                                               keep_blank_values=True).items()}
        path = urllib.parse.urlsplit(req.path).path
        if path.startswith("/api/"):
            method = path[len("/api/"):].strip("/")
        elif path.startswith("/response_url/"):
            method = "response_url"
        else:
            method = path
        call = Call(method, body, {k: v for k, v in req.headers.items()}, time.time(), path,
                    peer=tuple(req.client_address), wire_at=getattr(req, "wire_at", None))
        status, answer, headers = self._answer(call)
        call.status, call.answer = status, answer
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        data = json.dumps(answer).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        req.wfile.write(data)

    def _answer(self, call: Call) -> tuple[int, dict, dict]:
        with self._lock:
            if self._limits.get(call.method, 0) > 0:
                self._limits[call.method] -= 1
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": self._retry_after}
            if self._failures.get(call.method, 0) > 0:
                self._failures[call.method] -= 1
                return 200, {"ok": False, "error": "fatal_error"}, {}
        m = call.method
        if m == "response_url":
            return 200, {"ok": True}, {}
        if m == "auth.test":
            return 200, {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "restore-bot",
                         "team_id": "T0FAKE", "user_id": BOT_USER, "bot_id": "B0FAKE"}, {}
        if m == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            return 200, {"ok": True, "channel": call.channel, "ts": ts,
                         "message": {"text": call.body.get("text"), "ts": ts, "user": BOT_USER,
                                     **({"thread_ts": call.thread_ts} if call.thread_ts else {})}}, {}
        if m == "chat.update":
            return 200, {"ok": True, "channel": call.channel, "ts": call.body.get("ts"),
                         "text": call.body.get("text")}, {}
        if m == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}, {}
        return 200, {"ok": True}, {}


# Linux's SO_TIMESTAMPNS (socket(7)): the kernel stamps each packet as it reaches the socket. The
# fake's own thread may run much later on a busy machine; the stamp says when the request had in
# fact arrived, which is what "arriving at Slack" means for a server on other machines.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")


def _stamp_arrivals(sock: socket.socket) -> None:
    if sys.platform.startswith("linux"):
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def _arrival(sock: socket.socket) -> float | None:
    """Wait for the next request's first byte (left in the socket) and return the kernel's stamp."""
    if not sys.platform.startswith("linux"):
        return None
    data, ancillary, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(_TIMESPEC.size), socket.MSG_PEEK)
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(value)
            return sec + nsec / 1e9
    return None


# -- signed requests -------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]
    seconds: float

    def json(self) -> dict:
        return json.loads(self.body) if self.body.strip() else {}


def sign(secret: str, timestamp: int | str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSigner:
    """Sends requests to the bot's `/slack/events` as Slack would, signed with `secret`."""

    def __init__(self, bot_url: str, secret: str, fake: FakeSlack, *, team: str = "T0FAKE") -> None:
        self.url = bot_url.rstrip("/") + "/slack/events"
        self.secret = secret
        self.fake = fake
        self.team = team
        self._n = itertools.count(1)

    def post(self, body: str, *, timestamp: int | None = None, signature: str | None = None,
             secret: str | None = None, timeout: float = 10.0) -> Answer:
        ts = int(time.time()) if timestamp is None else timestamp
        sig = signature if signature is not None else sign(secret or self.secret, ts, body)
        req = urllib.request.Request(self.url, data=body.encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sig,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        })
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Answer(resp.status, resp.read().decode("utf-8", "replace"), dict(resp.headers),
                              time.monotonic() - t0)
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read().decode("utf-8", "replace"), dict(exc.headers), time.monotonic() - t0)

    # -- slash command ---------------------------------------------------------------------
    def command_body(self, text: str, user: str, channel: str, *, command: str = "/restore") -> tuple[str, str]:
        n = next(self._n)
        key = f"cmd{n}"
        fields = {
            "token": "legacy-verification-token-unused",
            "team_id": self.team,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "incident",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0FAKE",
            "is_enterprise_install": "false",
            "response_url": self.fake.response_url(key),
            "trigger_id": f"{n}.{int(time.time())}.fake-trigger",
        }
        return urllib.parse.urlencode(fields), key

    def command(self, text: str, user: str, channel: str, *, command: str = "/restore", **kw) -> tuple[Answer, str]:
        """POST `/restore text` (or another slash command) as `user`; returns (HTTP answer, response_url key)."""
        body, key = self.command_body(text, user, channel, command=command)
        return self.post(body, **kw), key

    # -- button click ----------------------------------------------------------------------
    def button_body(self, action_id: str, value: str, user: str, channel: str, *,
                    message_ts: str = "", block_id: str = "") -> tuple[str, str]:
        n = next(self._n)
        key = f"act{n}"
        payload = {
            "type": "block_actions",
            "team": {"id": self.team, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team},
            "api_app_id": "A0FAKE",
            "token": "legacy-verification-token-unused",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"{n}.{int(time.time())}.fake-trigger",
            "channel": {"id": channel, "name": "incident"},
            "message": {"type": "message", "ts": message_ts, "text": ""},
            "response_url": self.fake.response_url(key),
            "actions": [{
                "action_id": action_id, "block_id": block_id, "value": value, "type": "button",
                "style": "primary" if action_id.startswith("approve") else "danger",
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "action_ts": f"{time.time():.6f}",
            }],
        }
        return urllib.parse.urlencode({"payload": json.dumps(payload)}), key

    def click(self, action_id: str, value: str, user: str, channel: str, **kw) -> tuple[Answer, str]:
        post_kw = {k: kw.pop(k) for k in ("timestamp", "signature", "secret", "timeout") if k in kw}
        body, key = self.button_body(action_id, value, user, channel, **kw)
        return self.post(body, **post_kw), key
