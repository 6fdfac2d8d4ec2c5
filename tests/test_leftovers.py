"""Nothing left behind: kill -9 a restore-bot, start another, the dead one's temp dirs are gone.

Real processes and servers: the owners below are `restore-bot restore --target sandbox` runs and
Python processes holding sandboxes and drill dirs, killed with SIGKILL; the sweep runs in a later
`restore-bot plan`. Live owners' directories, in this process and in another, must survive it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from restore.mysql.leftovers import OwnedDir, sweep
from restore.mysql.procs import alive, using_path
from restore.mysql.sandbox import Sandbox
from tests.support.db import plan_args, restore_args

CLI = [sys.executable, "-m", "bot.cli"]

# A process that owns a sandbox and a drill dir until it is killed. With DETACHED its server is
# started without PR_SET_PDEATHSIG, as if the kernel had not delivered the signal yet: the sweep
# has to kill the server itself.
OWNER = """
import sys, time
import restore.mysql.sandbox
if sys.argv[1] == "DETACHED":
    restore.mysql.sandbox.die_with_parent = lambda: None
from restore.mysql.leftovers import OwnedDir
from restore.mysql.sandbox import Sandbox
box = Sandbox().start()
drill = OwnedDir("restore-bot-drill")
print(box.dir, box.proc.pid, drill.path, flush=True)
time.sleep(600)
"""


class Owner:
    def __init__(self, env: dict, mode: str = "ATTACHED") -> None:
        self.proc = subprocess.Popen([*CLI[:1], "-c", OWNER, mode], env=env, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert len(line) == 3, f"the owner process did not start its sandbox (exit {self.proc.poll()})"
        self.box, self.server, self.drill = Path(line[0]), int(line[1]), Path(line[2])

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def private_tmp():
    """A temp dir of its own for the restore-bot processes of one test (the sweep's whole world)."""
    with OwnedDir("rbl") as tmp:
        yield tmp.path, {**os.environ, "TMPDIR": str(tmp.path)}
        sweep(tmp.path)


def _gone(path: Path) -> None:
    assert not path.exists(), f"{path} is still there: {sorted(p.name for p in path.iterdir())}"
    assert not Path(f"{path}.lock").exists()
    assert using_path(str(path)) == [], f"processes still run in {path}"


def _serves(box: Path) -> bool:
    import pymysql
    try:
        pymysql.connect(unix_socket=str(box / "sock"), user="root").close()
        return True
    except pymysql.err.OperationalError:
        return False


def _plan(inc, env) -> None:
    out = subprocess.run([*CLI, *plan_args(inc), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]


def test_kill9_mid_restore_then_the_next_start_removes_the_sandbox(incidents, private_tmp):
    inc = incidents("ROW", "MINIMAL")
    tmp, env = private_tmp
    mine = Sandbox(base_dir=str(tmp)).start()   # a live owner in this process, beside the dead one
    other = Owner(env)                          # and one in another process
    try:
        run = subprocess.Popen([*CLI, *restore_args(inc, "sandbox"), "--json"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prefix = f"restore-bot-sandbox-{run.pid}-"
        box = None
        deadline = time.monotonic() + 60
        while run.poll() is None and time.monotonic() < deadline:
            boxes = [p for p in tmp.iterdir() if p.name.startswith(prefix) and p.is_dir()]
            if boxes and (boxes[0] / "pid").exists() and using_path(str(boxes[0])):
                box = boxes[0]
                break
            time.sleep(0.01)
        assert box is not None, f"restore-bot exited ({run.poll()}) before its sandbox server was seen"
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert box.exists() and Path(f"{box}.lock").exists(), "a killed restore-bot cannot have cleaned up"

        _plan(inc, env)   # the next start of restore-bot, any command

        _gone(box)
        assert _serves(mine.dir) and _serves(other.box), "a live owner's sandbox was touched"
        assert other.drill.is_dir() and alive(other.server)
    finally:
        mine.stop()
        other.kill9()


def test_a_server_outliving_its_killed_owner_is_killed_and_removed(incidents, private_tmp):
    inc = incidents("ROW", "MINIMAL")
    tmp, env = private_tmp
    owner = Owner(env, "DETACHED")
    owner.kill9()
    assert alive(owner.server) and _serves(owner.box), "the server was meant to outlive its owner"
    assert owner.drill.is_dir()

    _plan(inc, env)

    assert not alive(owner.server), "the dead owner's server still runs"
    _gone(owner.box)
    _gone(owner.drill)
    assert sorted(p.name for p in tmp.iterdir()) == []


@pytest.mark.parametrize("how", ["O_TMPFILE", "plain"])
def test_sweepers_racing_owners_never_touch_a_live_dir(private_tmp, monkeypatch, how):
    """Two sweepers in a loop, a process leaving dead dirs behind, and owners creating theirs."""
    if how == "plain":
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)   # the lock made under its name, then locked
    tmp, env = private_tmp
    sweeping = f"import time\nfrom restore.mysql.leftovers import sweep\nt = time.monotonic() + 2\n" \
               f"while time.monotonic() < t: sweep({str(tmp)!r})\n"
    dying = f"import os\nfrom restore.mysql.leftovers import OwnedDir\n" \
            f"for i in range(20):\n    if os.fork() == 0:\n        OwnedDir('restore-bot-drill', {str(tmp)!r}); os._exit(0)\n" \
            f"    os.wait()\n"
    procs = [subprocess.Popen([CLI[0], "-c", code], env=env) for code in (sweeping, sweeping, dying)]
    errors: list[str] = []

    def own() -> None:
        while any(p.poll() is None for p in procs[:2]):
            with OwnedDir("restore-bot-sandbox", tmp) as d:
                (d.path / "data").write_text("x")
                time.sleep(0.001)
                if not (d.path / "data").exists() or not d.lock.exists():
                    errors.append(f"{d.path} lost while its owner lives")

    owners = [threading.Thread(target=own) for _ in range(2)]
    for t in owners:
        t.start()
    for t in owners:
        t.join()
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert not errors, errors[:3]
    sweep(tmp)
    assert sorted(p.name for p in tmp.iterdir()) == [], "the dead owners' dirs are not all gone"


def test_only_our_own_dead_dirs_are_removed(private_tmp):
    """Names alone prove nothing: no magic in the lock, a symlink, a lock held: all left alone."""
    tmp, _ = private_tmp
    victim = tmp / "victim"
    victim.mkdir()
    (victim / "precious").write_text("x")
    (tmp / "restore-bot-sandbox-1-deadbe").symlink_to(victim)
    from restore.mysql.leftovers import MAGIC
    (tmp / "restore-bot-sandbox-1-deadbe.lock").write_bytes(MAGIC + b"1\n")
    (tmp / "other-tool-2-cafeba").mkdir()
    (tmp / "other-tool-2-cafeba.lock").write_text("someone else's\n")
    live = OwnedDir("restore-bot-drill", tmp)
    unrelated = [tmp / f"file-{i}" for i in range(2000)]
    for f in unrelated:
        f.touch()

    started = time.perf_counter()
    assert sweep(tmp) == []
    took = time.perf_counter() - started

    assert (victim / "precious").exists() and (tmp / "other-tool-2-cafeba").is_dir() and live.path.is_dir()
    assert took < 0.5, f"a sweep of {len(unrelated)} entries took {took:.3f}s"
    live.remove()
    for f in [*unrelated, tmp / "restore-bot-sandbox-1-deadbe", tmp / "restore-bot-sandbox-1-deadbe.lock",
              tmp / "other-tool-2-cafeba.lock"]:
        f.unlink()
    (tmp / "other-tool-2-cafeba").rmdir()
    (victim / "precious").unlink()
    victim.rmdir()
