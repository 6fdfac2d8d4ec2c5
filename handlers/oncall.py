"""`/oncall` (who is on call), `/oncall set @user`, and what an alert's buttons record.

Platform neutral like handlers.restore: *Acknowledge* stops an alert's escalation; *Expected*
makes later plans list the event as expected and never stop there by themselves; *This is the
incident* makes later plans that name no stop stop right before it.
"""
from __future__ import annotations

from handlers import messages
from handlers.alerts import AlertStore, Oncall
from handlers.commands import Command
from handlers.dispatcher import Reply
from handlers.jobstore import JobStore
from handlers.presenter import replies as say
from handlers.presenter.answers import oncall as oncall_text
from handlers.presenter.answers import oncall_set
from handlers.store_schema import DEFAULT_CLUSTER


class OncallHandler:
    commands = ("oncall", "oncall set", "alert ack", "alert expected", "alert incident")

    def __init__(self, oncall: Oncall, alerts: AlertStore, store: JobStore,
                 per_cluster: dict[str, Oncall] | None = None) -> None:
        """`per_cluster`: with several clusters, each one's rotation (`/oncall` lists them all;
        `/oncall set` stays one override for every cluster)."""
        self.oncall, self.alerts, self.store, self.per_cluster = oncall, alerts, store, per_cluster or {}

    def handle(self, cmd: Command, reply: Reply) -> None:
        if cmd.name == "oncall" and len(self.per_cluster) > 1:
            reply.ephemeral("\n".join(f"*{name}*: " + oncall_text(o.current(), o.cfg.rotation)
                                      for name, o in self.per_cluster.items()))
        elif cmd.name == "oncall":
            reply.ephemeral(oncall_text(self.oncall.current(), self.oncall.cfg.rotation))
        elif cmd.name == "oncall set":
            self.alerts.set_oncall(cmd.who)
            self.store.audit(cmd.user, "oncall set", None, cmd.who)
            reply.say(oncall_set(cmd.who, cmd.user))
        else:
            self._alert(cmd, reply)

    def _alert(self, cmd: Command, reply: Reply) -> None:
        info = self.alerts.get(cmd.alert or "")
        event = (info or {}).get("event")
        if cmd.name == "alert ack":
            if info and self.alerts.ack(cmd.alert, cmd.user):
                self.store.audit(cmd.user, "acknowledged alert", None, info["reason"])
                reply.say(say.alert_acked(cmd.user), thread=(info["channel"], info["ts"]))
            return
        if not event:
            reply.ephemeral(messages.ALERT_UNKNOWN)
            return
        tx, gtid = f"{event['tx_file']}:{event['tx_pos']}", event.get("gtid")
        cluster = info.get("cluster") or DEFAULT_CLUSTER   # the alert's: its choice and expected events
        if cmd.name == "alert expected":
            self.store.mark_expected(tx, gtid, cmd.user, info["reason"], cluster)
            self.store.audit(cmd.user, "marked expected", None, f"{tx}{' GTID ' + gtid if gtid else ''}: {info['reason']}")
            self.alerts.mark(cmd.alert, "expected", cmd.user)
            text = say.alert_expected(cmd.user, tx, gtid)
        else:
            spec = gtid or tx
            self.store.set_choice(spec, [], cmd.user, say.incident_why(info["reason"]), cluster)
            self.store.audit(cmd.user, "marked incident", None, f"stop before {spec}: {info['reason']}")
            self.alerts.mark(cmd.alert, "incident", cmd.user)
            text = say.alert_incident(cmd.user, spec)
        reply.say(text, thread=(info["channel"], info["ts"]))
