"""The harness of the Slack scenarios: a real `restore-bot serve` process and what it told Slack.

`Bot` runs and stops the process (and sweeps up what a killed one left); `World` drives it the
way Slack would (signed slash commands and button clicks) and waits on the fake Slack's record.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pymysql

from restore.mysql.sandbox import Sandbox
from tests.support.fake_slack import FakeSlack, SlackSigner

CHANNEL = "CINC"
OPS1, OPS2, APP1, NOBODY = "UOPS1", "UOPS2", "UAPP1", "UNOBODY9"
JOB_TIMEOUT = 120.0
# The bot aims to acknowledge within 1 s; Slack gives up after 3 s. On a loaded CI machine the
# checks allow 2.5 s, and every message carries the measured figure.
ACK_SECONDS = 2.5


# -- the bot process -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def processes_mentioning(text: str) -> list[int]:
    """Pids of processes (other than us) whose command line mentions `text` (the bot's private temp
    dir, or the prefix of its sandboxes' dirs: a substring, not a whole path as procs.using_path wants)."""
    return [proc.pid for proc in psutil.process_iter(["cmdline"])
            if proc.pid != os.getpid() and text in " ".join(proc.info["cmdline"] or ())]


class Bot:
    """`restore-bot serve` as a subprocess; restartable; every process it spawns is killed at the end."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, tmpdir: str) -> None:
        self.config, self.env, self.log, self.tmpdir = config, env, log, tmpdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        exe = Path(sys.executable).with_name("restore-bot")
        self.argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "bot.cli"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Bot":
        with open(self.log, "ab") as log:
            log.write(f"\n=== serve started {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv + ["serve", "--config", str(self.config), "--port", str(self.port)],
                                         env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"restore-bot serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = http_get(self.url + "/healthz", timeout=1.0)
                if status == 200 and json.loads(body).get("ok"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"restore-bot serve did not answer /healthz within {timeout}s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The serve process's children: its worker (the watcher thread spawns it)."""
        if not self.proc:
            return []
        try:
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        """SIGKILL the serve process (not its worker: that one must die with it on its own)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM (serve then stops its worker, which hands its jobs back); SIGKILL what is left."""
        code = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # the serve process and its worker child
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=10)
        return code

    def sweep(self) -> list[int]:
        """Kill whatever the bot started that is still running (sandbox servers live in its temp dir)."""
        pids = processes_mentioning(self.tmpdir)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, n: int = 6000) -> str:
        return self.log_text()[-n:]


def shut_down(bot: Bot, fake: FakeSlack, work: Path, owned) -> None:
    """End of a module's world: the bot and all it started, the fake (its record kept in
    `work/slack-calls.txt` for post-mortems), the bot's private temp dir."""
    bot.stop()
    time.sleep(0.5)
    bot.sweep()
    fake.stop()
    (work / "slack-calls.txt").write_text(FakeSlack.describe(fake.snapshot(), width=None))
    owned.remove()


def up(world: "World") -> "World":
    """The shared world, with a serve process that is up (a failed scenario may have left it down)."""
    if world.bot.proc is None or world.bot.proc.poll() is not None:
        world.bot.start()
    return world


class World:
    """What the scenarios use: the bot, the fake Slack, signed requests, the job store, the servers."""

    def __init__(self, bot: Bot, fake: FakeSlack, signer: SlackSigner, secret: str, token: str,
                 store_path: Path, incident: dict, prod: Sandbox, db_password: str = "") -> None:
        self.bot, self.fake, self.signer = bot, fake, signer
        self.secret, self.token = secret, token
        self.db_password = db_password   # the prod DSN's password (given to the bot as ${PROD_DB_PASSWORD})
        self.store_path, self.incident, self.prod = store_path, incident, prod

    # -- the job store (read only: to know when a job is in a given phase) --------------------
    def store(self):
        from handlers.jobstore import JobStore
        if getattr(self, "_store", None) is None:
            self._store = JobStore(self.store_path)
        return self._store

    def job(self, job_id: str):
        return self.store().get(job_id)

    def wait_phase(self, job_id: str, phase: str, timeout: float = JOB_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job and job.state == "running" and job.phase == phase:
                return job
            if job and job.finished:
                raise AssertionError(f"job {job_id} finished ({job.state}) before reaching phase {phase}: "
                                     f"{job.error or job.result}")
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached phase {phase}; it is {self.job(job_id)}\n"
                             f"{self.bot.log_tail()}")

    # -- talking to the bot --------------------------------------------------------------------
    def command(self, text: str, user: str = OPS1, channel: str = CHANNEL):
        answer, key = self.signer.command(text, user, channel)
        assert answer.status == 200, f"/restore {text}: HTTP {answer.status} {answer.body}\n{self.bot.log_tail()}"
        return answer, key

    def click(self, action: str, job_id: str, user: str, channel: str = CHANNEL):
        answer, key = self.signer.click(action, job_id, user, channel, block_id=f"approval-{job_id}")
        assert answer.status == 200, f"{action} by {user}: HTTP {answer.status} {answer.body}"
        return answer, key

    def response(self, key: str, timeout: float = 10.0):
        """The first respond() call bolt made to this request's response_url."""
        path = f"/response_url/{key}"
        return self.fake.wait_for(lambda calls: [c for c in calls if c.path == path], timeout,
                                  f"a reply to {path}")[0]

    def start_job(self, text: str, user: str = OPS1) -> str:
        """Start a job; Slack gets its answer at once (ACK_SECONDS) and the job id right after it."""
        sent = time.time()
        answer, key = self.command(text, user)
        assert answer.seconds < ACK_SECONDS, \
            f"/restore {text} acknowledged after {answer.seconds:.2f}s (limit {ACK_SECONDS}s; the aim is 1s)"
        reply = self.response(key)
        assert reply.body.get("response_type") == "ephemeral"
        assert reply.at - sent < ACK_SECONDS, \
            f"the job id came {reply.at - sent:.2f}s after /restore {text} (limit {ACK_SECONDS}s; the aim is 1s)"
        m = re.search(r"job \*(R\d+)\* queued", reply.text)
        assert m, f"/restore {text} was not acknowledged with a job id: {reply.text!r}"
        assert f"<#{CHANNEL}>" in reply.text
        return m.group(1)

    # -- the job's card --------------------------------------------------------------------------
    def cards(self, job_id: str, calls=None):
        calls = self.fake.snapshot() if calls is None else calls
        return [c for c in calls if c.method == "chat.postMessage" and c.status == 200 and not c.thread_ts
                and f"`{job_id}`" in c.text]

    def card_versions(self, job_id: str, calls=None):
        """The card as posted, then every successful chat.update of it, in order."""
        calls = self.fake.snapshot() if calls is None else calls
        cards = self.cards(job_id, calls)
        if not cards:
            return []
        ts = cards[0].ts
        return [cards[0]] + [c for c in calls if c.method == "chat.update" and c.status == 200
                             and c.body.get("ts") == ts]

    def thread(self, job_id: str, calls=None):
        calls = self.fake.snapshot() if calls is None else calls
        cards = self.cards(job_id, calls)
        if not cards:
            return []
        return [c for c in calls if c.method == "chat.postMessage" and c.thread_ts == cards[0].ts and c.status == 200]

    def wait_outcome(self, job_id: str, word: str, timeout: float = JOB_TIMEOUT):
        """Wait until the job's card says `word` and its thread carries the outcome; return the final card."""
        final_event = {"succeeded": "✔", "failed": "✗", "aborted": "■"}[word]

        def done(calls):
            versions = self.card_versions(job_id, calls)
            if not versions or word not in versions[-1].text:
                return None
            if not any(c.text.startswith(final_event) for c in self.thread(job_id, calls)):
                return None
            return versions[-1]
        try:
            return self.fake.wait_for(done, timeout, f"job {job_id}'s card to say {word}")
        except AssertionError as exc:
            job = self.job(job_id)
            raise AssertionError(f"{exc}\njob: {job}\nserve log:\n{self.bot.log_tail()}") from None

    def sandboxes(self) -> list[int]:
        """Pids of the sandbox servers the bot's jobs started (they live in its private temp dir)."""
        return processes_mentioning(self.bot.tmpdir + "/restore-bot-sandbox")

    def wait_no_sandbox(self, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sandboxes():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: pids {self.sandboxes()} after {timeout}s\n{self.bot.log_tail()}")
            time.sleep(0.1)

    def stage_held_mid_replay(self, before: int, tries: int = 3) -> tuple[str, pymysql.Connection]:
        """A stage job whose replay is held mid-way, however fast this machine replays: once the job
        replays, a lock on the stage sandbox's checkpoint table (which every batch commit updates)
        makes the replay wait at its next commit, as on a slow target. The hold counts only if it
        landed before `before` transactions were committed; else that job runs to its end and
        another one is started. Returns the job id and the connection holding the lock: closing it
        lets the replay go on."""
        seen = []
        for _ in range(tries):
            job_id = self.start_job("stage")
            self.wait_phase(job_id, "replay")
            ports = [m[1] for e in self.store().events(job_id) if (m := re.search(r"sandbox server on port (\d+)", e))]
            assert len(ports) == 1, self.store().events(job_id)
            hold = pymysql.connect(host="127.0.0.1", port=int(ports[0]), user="root", autocommit=True)
            with hold.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 30")   # the lock comes at the replay's next commit
                cur.execute("LOCK TABLES _restore_bot.state WRITE")
                cur.execute("SELECT phase, transactions FROM _restore_bot.state")
                rows = cur.fetchall()
            seen.append((job_id, rows))
            if len(rows) == 1 and rows[0][0] in ("loaded", "replaying") and rows[0][1] < before:
                return job_id, hold
            hold.close()
            self.wait_outcome(job_id, "succeeded")   # the replay outran the lock: try again
        raise AssertionError(f"no stage replay could be held before {before} transactions: "
                             f"(job, checkpoint) {seen}")

    def stage_job_ok(self) -> str:
        """A stage run that verified OK (the one earlier scenarios made, or a new one)."""
        for job in self.store().jobs(kind="stage", states=("succeeded",), limit=20):
            if job.args == {"stop_before": "auto", "skips": []}:
                return job.id
        job_id = self.start_job("stage")
        self.wait_outcome(job_id, "succeeded")
        return job_id

    def request_prod(self, user: str, channel: str = CHANNEL) -> str:
        """`/restore prod` as `user`: the approval request with its buttons; returns the job id."""
        mark = self.fake.mark()
        self.command("prod", user, channel)

        def approval(calls):
            return [c for c in calls[mark:] if c.method == "chat.postMessage" and "approve_prod" in c.text]
        post = self.fake.wait_for(approval, 15, "the prod approval request")[0]
        blocks = post.body["blocks"]
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        buttons = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
        assert set(buttons) == {"approve_prod", "reject_prod"}, blocks
        assert buttons["approve_prod"]["value"] == buttons["reject_prod"]["value"]
        assert post.channel == CHANNEL and f"<@{user}>" in post.text
        return buttons["approve_prod"]["value"]

    def ephemeral_to(self, user: str, since: int, text: str, timeout: float = 10.0):
        return self.fake.wait_for(
            lambda calls: [c for c in calls[since:] if c.method == "chat.postEphemeral" and c.body.get("user") == user
                           and text in c.text], timeout, f"an ephemeral message to {user} saying {text!r}")[0]
