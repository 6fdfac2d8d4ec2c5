"""`restore-bot watch`: the watcher and its alert path, alone or inside `serve`."""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable

from bot.alert_client import AlertSlackClient
from handlers.alerts import AlertPoster, AlertStore, Oncall, alert_text
from restore.errors import RestoreError
from restore.live.watcher import Alert, Watcher
from restore.mysql.dsn import Dsn
from restore.plan.destructive import DestructiveRules

log = logging.getLogger("restore-bot.watch")


class ConsoleAlerts:
    """Without Slack: alerts in the log (stderr), with how long after the commit they were seen."""

    def __init__(self, store: AlertStore, oncall: Oncall, source: str) -> None:
        self.store, self.oncall, self.source = store, oncall, source

    def __call__(self, alert: Alert) -> None:
        person = self.oncall.current()
        if self.store.claim(alert, person):
            lag = max(0.0, alert.detected_at - alert.server_time)
            log.warning("%s\n(seen %.3f s after the statement started)", alert_text(alert, person, self.source), lag)
            # Said, so no other instance (nor this one after a restart) claims it again to say it twice.
            self.store.posted(self.store.scoped(alert).key, "log", f"{time.time():.6f}")


class WatcherProcess:
    """The Watcher in a child process of its own; alerts and positions come back over a pipe.

    Decoding a busy server's binlog keeps the watcher on a CPU much of the time; as a thread it held
    this process's GIL meanwhile, and the alert's HTTP call (and Flask's threads) waited for it
    (bench/README.md, alert_latency). In a child it has an interpreter of its own, and it never
    touches SQLite after reading where to start, so a slow write cannot hold up the next detection.
    The thread running `run_forever()` here takes the child's messages in order: each alert goes to
    `on_alert`, each position it reached to `positions.save()` (after the alert that came before
    it), each trouble report to `on_trouble`. The child ends when `stop()` is called or when this
    process goes away (its control pipe closes); if it dies, it is started again where the last
    saved position says; so does one whose message this side failed to handle (a position the store
    could not save). A child that keeps dying is started again after a pause that doubles up to
    `restart_pause_max` and is reported twice: at its first end and once it has ended three times
    in a row, not at every restart (one that ran `stable_after` seconds starts the count anew).
    """

    restart_pause, restart_pause_max, stable_after = 1.0, 30.0, 30.0

    def __init__(self, source: Dsn, positions: AlertStore, on_alert: Callable[[Alert], None], *,
                 databases: tuple[str, ...] = (), rules: DestructiveRules | None = None,
                 on_trouble: Callable[[str], None] | None = None, nice: int = 0) -> None:
        self.positions = positions
        self.args = (source, positions.store.url, positions.source, positions.cluster, tuple(databases),
                     rules or DestructiveRules(), nice)
        self.nice = nice
        self.on_alert = on_alert
        self.on_trouble = on_trouble or (lambda text: None)
        self.stopping = threading.Event()
        self.proc: multiprocessing.process.BaseProcess | None = None
        self._control = None
        self._lock = threading.Lock()  # closing the control pipe: here or in stop(), never twice

    def run_forever(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # (fork would copy serve's threads' locks)
        handle = {"alert": self.on_alert, "trouble": self.on_trouble,
                  "position": lambda where: self.positions.save(*where)}
        if self.nice and (refused := set_priority(self.nice)):  # this thread posts the alerts
            self.on_trouble(refused)
        try:  # where to start, at once, as a watcher thread would (the child takes a moment to start)
            Watcher(self.args[0], self.positions, self.on_alert).start_position()
        except RestoreError:
            pass  # the child reports it, and retries
        except Exception:  # noqa: BLE001 (the store: the child reads it again, reports, and retries)
            log.warning("watch: reading where to start failed; the watcher process tries again", exc_info=True)
        pause, ends = self.restart_pause, 0   # ends in a row, each soon after its start
        while not self.stopping.is_set():
            started = time.monotonic()
            messages, messages_child = ctx.Pipe(duplex=False)
            control_child, control = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_watch_child, args=(messages_child, control_child, *self.args),
                               name="restore-bot-watch", daemon=True)
            proc.start()
            messages_child.close()
            control_child.close()
            self.proc, self._control = proc, control
            if self.stopping.is_set():
                self._let_go()
            failed = None
            try:
                while True:
                    kind, value = messages.recv()
                    handle[kind](value)
            except (EOFError, OSError):  # the child ended
                pass
            except Exception as exc:  # noqa: BLE001 (saving a position failed: the store is down or locked)
                # Not this thread's end, which stopped the cluster's watching for good and told no one:
                # the child goes too, and the next one reads again from the last position saved.
                log.warning("watch: handling the watcher's %s failed", kind, exc_info=True)
                failed = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"   # (not SQLAlchemy's SQL)
            finally:
                messages.close()
                self._let_go()
            proc.join()
            if self.stopping.is_set():
                break
            if time.monotonic() - started >= self.stable_after:
                pause, ends = self.restart_pause, 0   # it had been running: this end is news
            ends += 1
            if ends == 1 and failed:
                self.on_trouble(f"the watcher stopped: {failed}; starting it again from the last saved position")
            elif ends == 1:
                self.on_trouble(f"the watcher process ended (exit code {proc.exitcode}); starting it again")
            elif ends == 3:
                self.on_trouble(f"the watcher process keeps ending (exit code {proc.exitcode}, {ends} times in a row); "
                                f"starting it again after pauses growing to {self.restart_pause_max:.0f} s — its "
                                "log (serve's stderr) says why")
            self.stopping.wait(pause)
            pause = min(pause * 2, self.restart_pause_max)

    def stop(self) -> None:
        """From another thread: the child stops following and exits; `run_forever()` returns."""
        self.stopping.set()
        self._let_go()

    def _let_go(self) -> None:
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None


class _ParentPositions:
    """The child's PositionStore: reads where to start from the store, sends what to save to the parent."""

    def __init__(self, store: AlertStore, messages) -> None:
        self.store, self.messages = store, messages

    def load(self) -> tuple[str, int] | None:
        return self.store.load()

    def save(self, file: str, pos: int) -> None:
        self.messages.send(("position", (file, pos)))


def set_priority(nice: int) -> str | None:
    """The calling thread's CPU priority ([watch] nice): on a host whose CPUs are oversubscribed,
    the watcher and the alert path then run before batch work when they wake up. None when set;
    else what to do about it (a negative value needs root or CAP_SYS_NICE)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # Linux: this thread only
        return None
    except (OSError, AttributeError) as exc:
        return (f"could not set [watch] nice = {nice} ({type(exc).__name__}: {exc}); alerts still go out, at normal "
                f"priority — give restore-bot CAP_SYS_NICE (docker run --cap-add SYS_NICE) or remove the setting")


def _watch_child(messages, control, source: Dsn, store: str, store_source: str, cluster: str, databases, rules,
                 nice: int = 0) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    if nice and (refused := set_priority(nice)):  # before any other thread: they inherit it
        messages.send(("trouble", refused))
    watcher = Watcher(source, _ParentPositions(AlertStore(store, store_source, cluster=cluster), messages),
                      lambda alert: messages.send(("alert", alert)), databases=databases, rules=rules,
                      on_trouble=lambda text: messages.send(("trouble", text)))

    def until_parent_lets_go() -> None:
        try:
            control.recv()  # nothing is ever sent: EOF when the parent stops us or goes away
        except (EOFError, OSError):
            pass
        watcher.stop()
    threading.Thread(target=until_parent_lets_go, name="control", daemon=True).start()
    watcher.run_forever()


def trouble_reporter(client, channel: str | None) -> Callable[[str], None]:
    """Trouble (source down, credentials refused, a binlog gap) to the log and, when Slack is
    configured, to the incident channel: the watchers report each trouble once, not per retry.
    Posted from a thread of its own: the caller may be the thread that posts alerts, and the
    first alert after an outage must not wait behind the "recovered" message."""
    pending: queue.Queue[str] = queue.Queue()

    def post_all() -> None:
        while True:
            text = pending.get()
            try:
                client.chat_postMessage(channel=channel, text=f"⚠️ {text}")
            except Exception as exc:  # Slack down too: the log line stays
                log.warning("could not post that to Slack (%s)", type(exc).__name__)

    if client is not None and channel:
        threading.Thread(target=post_all, name="trouble-reports", daemon=True).start()

    def report(text: str) -> None:
        log.warning("%s", text)
        if client is not None and channel:
            pending.put(text)
    return report


def alert_client(settings) -> AlertSlackClient | None:
    """The alert path's own Slack client, when a token and an incident channel are configured."""
    if settings.slack.bot_token and settings.slack.channel:
        return AlertSlackClient(settings.slack.bot_token.reveal(), settings.slack.api_url)
    return None


def build_watcher(settings, source: Dsn, *, client=None, on_posted=None, on_trouble=None,
                  instance_id: str | None = None, cluster: str | None = None) -> tuple[WatcherProcess, AlertPoster | None]:
    """`instance_id`: who claims the alerts in a shared store; `cluster`: the one its buttons act on."""
    store = AlertStore(settings.store, source.redacted(), instance_id=instance_id, cluster=cluster)
    oncall = Oncall(settings, store)
    watch = settings.watch
    rules = DestructiveRules(fraction=watch.mass_fraction, min_rows=watch.mass_min_rows) if watch else DestructiveRules()
    poster = None
    # An alert names its cluster when the config names them (the alert store keys it by its DSN alone).
    named = getattr(settings, "clusters", None)
    label = f"{next(iter(named))} · {source.redacted()}" if named and len(named) == 1 else source.redacted()
    if client is not None and settings.slack.channel:
        poster = AlertPoster(client, settings.slack.channel, store, oncall, label,
                             escalate_after=settings.oncall.escalate_after_minutes * 60,
                             usergroup=settings.oncall.usergroup, on_posted=on_posted, cluster=cluster).start()
        on_alert = poster.post  # on the thread reading the watcher process's pipe: it does nothing else
    else:
        on_alert = ConsoleAlerts(store, oncall, label)
    watcher = WatcherProcess(source, store, on_alert,
                             databases=watch.databases if watch else (), rules=rules, nice=watch.nice if watch else 0,
                             on_trouble=on_trouble or (lambda text: log.warning("watch: %s", text)))
    return watcher, poster


def run_watch(settings, source_text: str | None, cluster: str | None = None) -> int:
    """`restore-bot watch`: the [watch] source of `cluster` (needed when several are configured)."""
    try:
        settings = settings.cluster(cluster)
    except KeyError:
        log.error("restore-bot watch: name the cluster with --cluster (clusters: %s)", ", ".join(settings.cluster_names))
        return 2
    if source_text:
        source = Dsn.parse(source_text, what="--source")
    elif settings.watch is not None:
        source = settings.watch.source
    else:
        log.error("restore-bot watch: pass --source mysql://user:pass@host:port or set [watch] source")
        return 2
    client = alert_client(settings)
    report = trouble_reporter(client, settings.slack.channel)
    watcher, poster = build_watcher(settings, source, client=client, on_trouble=lambda text: report(f"watch: {text}"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    log.info("watching %s for destructive events", source.redacted())
    try:
        watcher.run_forever()
    except KeyboardInterrupt:
        watcher.stop()
    finally:
        if poster:
            poster.stop()
        time.sleep(0.1)
    return 0
