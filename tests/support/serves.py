"""Several `restore-bot serve` processes on one config (its [store] shared), each as if on a host of
its own ($RESTORE_BOT_HOST), talking to one fake Slack, their temp files in one private directory."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from restore.mysql.leftovers import OwnedDir
from tests.support.fake_slack import FakeSlack
from tests.support.slack_bot import Bot


@contextmanager
def serving(config: Path, logs: Path, n: int = 2, env: dict[str, str] | None = None
            ) -> Iterator[tuple[FakeSlack, list[Bot]]]:
    """`n` serve processes, up (answering /healthz), their logs `logs/serve-<i>.log`; `env` added to
    theirs. At the end every one is stopped and what they started is killed and removed."""
    owned = OwnedDir("rbh")
    fake = FakeSlack().start()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
    base.update(SLACK_BOT_TOKEN="xoxb-" + secrets.token_hex(6), SLACK_SIGNING_SECRET=secrets.token_hex(16),
                SLACK_API_URL=fake.api_url, PYTHONUNBUFFERED="1", TMPDIR=str(owned.path), **(env or {}))
    bots = [Bot(config, {**base, "RESTORE_BOT_HOST": f"host-{i}"}, logs / f"serve-{i}.log", str(owned.path))
            for i in range(n)]
    try:
        for bot in bots:
            bot.start()
        yield fake, bots
    finally:
        for bot in bots:
            bot.stop()
            bot.sweep()
        fake.stop()
        owned.remove()
