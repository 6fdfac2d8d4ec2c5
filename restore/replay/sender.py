"""Runs SQL on the target from a thread of its own, in order, so replay overlaps the server.

The server spends about as long executing a batch of `BINLOG` statements as we spend reading
and encoding the next one. Sending from a second thread lets both happen at once: the thread
waits on the socket (without the GIL) while the replay loop prepares what comes next.

Order and failure semantics are those of running everything inline: groups run one after
another, and after the first failure nothing more is sent; the failure is handed back to the
replay loop at its next submit() or drain(), with the context it was submitted with.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import pymysql


class GroupFailed(Exception):
    """A statement of a group failed: `index` counts the statements that had run before it."""

    def __init__(self, error: pymysql.err.MySQLError, index: int) -> None:
        super().__init__(error)
        self.error, self.index = error, index


def run_group(conn, sqls: Sequence[bytes]) -> None:
    """One round trip: the statements joined into one multi-statement query, every result read."""
    index = 0
    try:
        conn.query(b";\n".join(sqls))
        while conn._result is not None and conn._result.has_next:
            index += 1
            conn.next_result()
    except pymysql.err.MySQLError as exc:
        raise GroupFailed(exc, index) from None


class SendFailure(Exception):
    def __init__(self, failed: GroupFailed, group: Any, context: Any) -> None:
        super().__init__(failed.error)
        self.failed, self.group, self.context = failed, group, context


class Sender:
    """Owns the connection while it runs: the caller may use it only after drain() or close()."""

    def __init__(self, conn, depth: int = 1) -> None:
        self.conn = conn
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._failure: SendFailure | None = None
        self._crash: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="restore-sender", daemon=True)
        self._thread.start()

    def submit(self, sqls: Sequence[bytes], group: Any, context: Any) -> None:
        """Queue one group; `group` and `context` come back in the SendFailure if it fails."""
        self._raise_failure()
        self._queue.put((sqls, group, context))

    def drain(self) -> None:
        """Wait until everything submitted has run; raise the first failure."""
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        """Stop after what is running now; groups still queued are dropped (nothing was
        committed by them, and the checkpoint covers only what was)."""
        self._cancelled = True
        interrupted = False
        # A second Ctrl-C must not let the caller close the connection under a running query.
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            raise KeyboardInterrupt

    def _raise_failure(self) -> None:
        if self._crash is not None:
            raise self._crash
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._cancelled:
                    return
                continue
            try:
                if self._failure is None and self._crash is None and not self._cancelled:
                    sqls, group, context = item
                    try:
                        run_group(self.conn, sqls)
                    except GroupFailed as failed:
                        self._failure = SendFailure(failed, group, context)
            except BaseException as exc:  # a broken connection: hand it to the replay loop
                self._crash = exc
            finally:
                self._queue.task_done()
