"""A watcher alert as the alert path receives it, for tests of posting, escalation and the store."""
from __future__ import annotations

import time

from restore.live.watcher import Alert


def alert_at(pos: int) -> Alert:
    """A DROP TABLE of club.log seen at binlog.000001:`pos` (its transaction began 40 bytes earlier)."""
    return Alert(key=f"binlog.000001:{pos}", reason="DROP TABLE", statement="DROP TABLE club.log",
                 database="club", table="log", rows=None, file="binlog.000001", pos=pos,
                 tx_file="binlog.000001", tx_pos=pos - 40, gtid=None, server_time=int(time.time()),
                 thread_id=7, detected_at=time.time())
