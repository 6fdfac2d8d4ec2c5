"""Temporary directories that name their owner, and the sweep that removes those whose owner died.

restore-bot's throwaway directories (sandbox datadirs, drill work dirs) are `<prefix>-<pid>-<hex>`
with a sibling `<name>.lock` that the owning process holds with flock(2) for as long as the
directory lives. The kernel drops the lock when the owner dies, kill -9 included. `sweep()` — run
by every start of restore-bot (the CLI, and Sandbox.start() in the worker and the tests) — tries
each such lock: one it can take belongs to a dead owner, so it kills what still runs in that
directory (a sandbox's mariadbd) and removes it; one it cannot take belongs to a live owner and
its directory is not touched. The lock decides, not the pid (pids are reused, and a process in
another pid namespace looks dead); the pid in the name tells a person whose it was.

The lock exists, locked and filled in, before its name appears and before the directory is
made, so a sweeper never sees a live owner's directory unlocked.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from restore.mysql.procs import kill_using

log = logging.getLogger(__name__)

MAGIC = b"restore-bot owner pid "
_LOCK = re.compile(r"[a-z][a-z-]*-(\d+)-[0-9a-f]{6}\.lock")


class OwnedDir:
    """A new directory `<base>/<prefix>-<pid>-<hex>`, ours until remove() or our death."""

    def __init__(self, prefix: str, base_dir: str | os.PathLike | None = None) -> None:
        base = Path(base_dir or tempfile.gettempdir())
        self._fd, name = _new_lock(base, prefix)
        self.path = base / name
        self.lock = base / (name + ".lock")
        try:
            self.path.mkdir(mode=0o700)
        except BaseException:
            self._release()
            raise

    def remove(self) -> None:
        """Delete the directory, then its lock (a sweeper finding the lock free finishes the job)."""
        if self._fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        try:
            self.lock.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OwnedDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _new_lock(base: Path, prefix: str) -> tuple[int, str]:
    """(fd holding the flock, name) of a new `<name>.lock` in `base`."""
    content = MAGIC + f"{os.getpid()}\n".encode()
    while True:
        # short: a sandbox's socket lives in it, and a unix socket's path has at most 107 bytes
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        lock = base / (name + ".lock")
        try:  # an unnamed file, locked and filled in before it is linked under its name
            fd = os.open(base, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, content)
            try:
                os.link(f"/proc/self/fd/{fd}", lock)
                return fd, name
            except FileExistsError:
                os.close(fd)
                continue
            except OSError:  # no /proc: the plain way below
                os.close(fd)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        # Until the content is written a sweeper that got the lock first leaves the file alone.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, content)
        return fd, name


def sweep(*base_dirs: str | os.PathLike | None) -> list[Path]:
    """Remove what dead owners left in the temp dir and in `base_dirs`; returns what was removed.

    Never raises: a directory that cannot be removed now is tried again by the next sweep."""
    removed: list[Path] = []
    seen: set[str] = set()
    for base in (tempfile.gettempdir(), *base_dirs):
        if not base or os.path.realpath(base) in seen:
            continue
        seen.add(os.path.realpath(base))
        try:
            with os.scandir(base) as entries:
                locks = [Path(base) / e.name for e in entries if _LOCK.fullmatch(e.name)]
        except OSError:
            continue
        for lock in locks:
            try:
                if _reap(lock):
                    removed.append(lock.with_suffix(""))
            except OSError as exc:
                log.warning("could not remove %s: %s", lock.with_suffix(""), exc)
    return removed


def _reap(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, not a file, not ours
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive
        held = os.fstat(fd)
        try:
            named = os.stat(lock, follow_symlinks=False)
        except FileNotFoundError:
            return False  # another sweeper (or the owner) finished it
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino) or held.st_uid != os.geteuid():
            return False
        if os.pread(fd, len(MAGIC), 0) != MAGIC:
            return False  # not ours, or an owner between creating and filling its lock
        path = lock.with_suffix("")
        killed = kill_using(str(path))
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            return False  # keep the lock: the next sweep tries again
        lock.unlink()
        owner = _LOCK.fullmatch(lock.name)[1]
        log.info("removed %s, left by process %s which is gone%s", path, owner,
                 f" (killed {len(killed)} process(es) still running in it)" if killed else "")
        return True
    finally:
        os.close(fd)
