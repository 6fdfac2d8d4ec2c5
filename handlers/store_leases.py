"""Leases in the store: "exactly one serve instance does X" (watches cluster homepage, runs the
scheduler...) without a coordinator. A lease is one row: its name, its owner, and when it expires
by the database server's clock. Taking it is one atomic UPDATE that succeeds only when the lease
expired or is already ours (or an INSERT, when nobody ever held it, that fails on the unique name),
so of two instances asking at once exactly one gets it. Its owner renews it well within its ttl; an
owner that dies (kill -9, a lost host) stops renewing, and another takes it when it expires.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from handlers.store import Store, open_store
from handlers.store_schema import leases

_l = leases.c


class LeaseStore:
    def __init__(self, path: str | Path | Store) -> None:
        self.store = open_store(path)

    def acquire_lease(self, name: str, instance_id: str, ttl: float) -> bool:
        """Hold `name` for `ttl` seconds from now: True if it was free, expired, or ours already."""
        if self.renew(name, instance_id, ttl, only_own=False):
            return True
        return self.store.insert_new(leases, {"name": name, "owner": instance_id, "expires": self.store.now() + ttl})

    def renew(self, name: str, instance_id: str, ttl: float, *, only_own: bool = True) -> bool:
        """Extend our lease to `ttl` seconds from now. False: it is not ours any more (it expired and
        another instance took it): stop doing what it guards."""
        now = self.store.now()
        mine = _l.owner == instance_id
        with self.store.read() as db:
            cur = db.execute(leases.update().where(_l.name == name, mine if only_own else sa.or_(mine, _l.expires < now))
                             .values(owner=instance_id, expires=now + ttl))
        return cur.rowcount == 1

    def release(self, name: str, instance_id: str) -> bool:
        """Give the lease up (a clean stop), so another instance need not wait for it to expire."""
        with self.store.read() as db:
            return db.execute(leases.delete().where(_l.name == name, _l.owner == instance_id)).rowcount == 1

    def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds the lease and for how many more seconds (negative: expired, not yet taken)."""
        with self.store.read() as db:
            row = db.execute(sa.select(_l.owner, _l.expires - self.store.now()).where(_l.name == name)).first()
        return (row[0], float(row[1])) if row else None
