"""A physical backup of a test server, as an operator takes one (`mariadb-backup --backup`)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from restore.mysql.sandbox import Sandbox


def take_backup(src: Sandbox, target: Path) -> Path:
    """`mariadb-backup --backup` of the whole of `src` into `target` (not prepared)."""
    out = subprocess.run(["mariadb-backup", "--backup", f"--socket={src.socket}", "--user=root",
                          f"--datadir={src.dir / 'data'}", f"--target-dir={target}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return target
