"""`restore-bot worker` processes sharing one job store, each as if on a host of its own
($RESTORE_BOT_HOST): a dead worker's job is then taken over by heartbeat, not by pid."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from handlers.jobstore import JobStore

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Starts workers on `config`, their stderr in `logs/worker-<n>.log`; stop() ends those still running."""

    def __init__(self, config: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.logs = config, logs
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        n = len(self.procs)
        with open(self.logs / f"worker-{n}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--config", str(self.config)],
                                    cwd=ROOT, env={**self.env, "RESTORE_BOT_HOST": f"host-{n}"},
                                    stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(proc)
        return proc

    def log_tails(self, n: int = 2000) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace")[-n:] for p in sorted(self.logs.glob("worker-*.log"))}

    def stop(self) -> None:
        """SIGTERM (a worker hands its jobs back and removes its sandboxes), SIGKILL after 30 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill_9_when(self, jobs: JobStore, job_id: str, ready: Callable[[], T | None], timeout: float = 120
                    ) -> tuple[T, int, float]:
        """Wait for `ready()` to say job `job_id` is where it should die (a value, not None), then SIGKILL
        the worker running it. Returns that value, the killed pid and the monotonic time of the kill.
        A wait that times out says where the job was and what the workers logged."""
        deadline = time.monotonic() + timeout
        while (value := ready()) is None:
            if time.monotonic() > deadline:
                j = jobs.get(job_id)
                raise AssertionError(f"timed out after {timeout:.0f}s: job {job_id} {j.state}, phase {j.phase}, "
                                     f"progress {j.progress}, owner {j.owner}, events {jobs.events(job_id)}, "
                                     f"worker logs {self.log_tails()}")
            time.sleep(0.05)
        victim = jobs.get(job_id).worker_pid
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        next(p for p in self.procs if p.pid == victim).wait()
        return value, victim, killed_at

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]
