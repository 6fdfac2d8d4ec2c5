"""A `restore-bot serve` watching several clusters, as the supervision test and the fleet bench
(bench/fleet_latency.py) run it: its config, its environment, and its watcher processes."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import psutil

CHANNEL = "CINC"


def fleet_config(path: Path, sources: dict[str, str], databases: list[str]) -> Path:
    """A [clusters.NAME] per source URL, each watching `databases` (a store beside the file)."""
    text = f"""
[slack]
channel = "{CHANNEL}"
[access]
operators = ["UOPS"]
approvers = ["UAPP"]
[oncall]
rotation = ["UKIM"]
rotation_start = "2026-01-05"
[store]
path = "store.sqlite3"
"""
    for name, url in sources.items():
        text += f"""
[clusters.{name}]
binlogs = {json.dumps(url)}
[clusters.{name}.watch]
source = {json.dumps(url)}
databases = {json.dumps(databases)}
"""
    path.write_text(text)
    return path


def serve_env(slack_api_url: str, tmpdir: str) -> dict[str, str]:
    """serve's environment: Slack credentials of its own, its Slack at `slack_api_url`, temp files in `tmpdir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RESTORE_BOT_"))}
    env.update(SLACK_BOT_TOKEN="xoxb-" + secrets.token_hex(6), SLACK_SIGNING_SECRET=secrets.token_hex(16),
               SLACK_API_URL=slack_api_url, PYTHONUNBUFFERED="1", TMPDIR=tmpdir)
    return env


def watcher_processes(serve_pid: int) -> list[psutil.Process]:
    """serve's watcher processes: its multiprocessing spawn children (its worker is `bot.cli worker`)."""
    try:
        kids = psutil.Process(serve_pid).children()
    except psutil.Error:
        return []
    out = []
    for kid in kids:
        try:
            if "spawn_main" in " ".join(kid.cmdline()):
                out.append(kid)
        except psutil.Error:
            pass
    return out
