"""`/oncall`: who is on call, and `/oncall set @user`. Platform neutral like handlers.restore."""
from __future__ import annotations

import re

from handlers.alerts import AlertStore, Oncall, mention

_MENTION = re.compile(r"^<?@?(?P<id>[A-Za-z0-9:_.-]+)(\|[^>]*)?>?$")
USAGE = "`/oncall` shows who is on call · `/oncall set @user` hands it over"


class OncallHandler:
    def __init__(self, oncall: Oncall, alerts: AlertStore, access, audit=None) -> None:
        self.oncall, self.alerts, self.access = oncall, alerts, access
        self.audit = audit or (lambda actor, action, detail: None)

    def handle(self, text: str, user: str, reply) -> None:
        words = text.strip().split()
        if words and words[0].lstrip("/").lower() == "oncall":
            words = words[1:]
        if not words:
            current = self.oncall.current()
            rotation = ", ".join(mention(u) for u in self.oncall.cfg.rotation) or "none configured"
            reply.ephemeral(f"On call now: {mention(current)}. Weekly rotation: {rotation}.")
            return
        if words[0].lower() != "set" or len(words) != 2 or not (m := _MENTION.match(words[1])):
            reply.ephemeral(USAGE)
            return
        if not self.access.can_operate(user):
            self.audit(user, "refused oncall set", words[1])
            reply.ephemeral(f"Sorry {mention(user)}, only operators may change who is on call. (This was logged.)")
            return
        self.alerts.set_oncall(m["id"])
        self.audit(user, "oncall set", m["id"])
        reply.say(f"{mention(m['id'])} is on call now (set by {mention(user)}).")
