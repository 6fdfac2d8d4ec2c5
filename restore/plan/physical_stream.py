"""A compressed physical backup: `mariadb-backup --backup --stream=mbstream`, compressed with zstd
into one file, `NAME.mbstream.zst` (issue 13, `[keep] compress = true`).

It is restored like a backup directory: its small files (the coordinates, the checkpoints,
backup-my.cnf) are read from the stream into a scratch directory that mirrors the backup (the
big files there are sparse placeholders of their size, so nothing is written for them), and
restore.plan.physical reads that. The copy a server starts on is the stream unpacked
(zstd -d | mbstream -x) into the scratch directory the physical base would copy a directory to.

The stream is checked end to end while it is read: zstd's frame and content checksum, each
mbstream chunk's CRC32 for the files kept, and every file closed by its end chunk. A truncated or
damaged file is refused naming it. What a scan found is kept beside the file (`NAME.meta.json`,
while its size and mtime are unchanged), so a listing or a retention pass does not read it again.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import zlib
from dataclasses import replace
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import zstandard

from restore.errors import SnapshotError
from restore.mysql.leftovers import OwnedDir
from restore.mysql.procs import die_with_parent
from restore.mysql.sandbox import find_program

SUFFIX = ".mbstream.zst"
_MAGIC = b"XBSTCK01"
_READ = 1 << 20
_SMALL = 1 << 16      # top-level files up to this size are kept whole (the metadata files)
_REMAKE = "take a new backup ([keep] physical = true, compress = true), or restore from an older one"


def is_stream(path: str | os.PathLike) -> bool:
    """A compressed physical backup file (by its name: NAME.mbstream.zst)."""
    return str(path).endswith(SUFFIX) and Path(path).is_file()


def compress_into(source, fh, level: int = 3) -> int:
    """Compress the byte stream `source` (a pipe) into the open file `fh` (one zstd frame with a
    content checksum); the bytes read."""
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
    read, _written = cctx.copy_stream(source, fh, read_size=_READ, write_size=_READ)
    return read


def _decompressed(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The stream's bytes; raises when the file ends inside a zstd frame (truncated) or is damaged."""
    dctx = zstandard.ZstdDecompressor()
    obj, done = dctx.decompressobj(), 0
    with open(path, "rb") as fh:
        while block := fh.read(_READ):
            done += len(block)
            while block:
                if obj.eof:
                    obj = dctx.decompressobj()   # a second frame (concatenated files)
                try:
                    out = obj.decompress(block)
                except zstandard.ZstdError as e:
                    raise _refuse(path, f"is damaged at about byte {done:,} of the compressed file ({e})") from None
                if out:
                    yield out
                block = obj.unused_data if obj.eof else b""
            if progress is not None:
                progress(done)
    if not obj.eof:
        raise _refuse(path, f"is truncated: the compressed stream ends inside a zstd frame after {done:,} bytes "
                            "(the copy or the backup stopped before the end)")


def _refuse(path: Path, message: str) -> SnapshotError:
    return SnapshotError(f"{path}: {message}", where=str(path), hint=_REMAKE)


class _Reader:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf, self.pos = chunks, b"", 0

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or fewer at the end of the stream."""
        while len(self.buf) - self.pos < n:
            more = next(self.chunks, None)
            if more is None:
                break
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        """Skip `n` bytes without keeping them; how many were there."""
        left = n
        while left:
            have = len(self.buf) - self.pos
            if have >= left:
                self.pos += left
                return n
            left -= have
            self.buf, self.pos = next(self.chunks, None) or b"", 0
            if not self.buf:
                return n - left
        return n


def scan(path: str | os.PathLike) -> dict:
    """{"files": {name: size}, "small": {name: base64 of its bytes}} of the stream in `path`;
    raises SnapshotError naming the file when it is truncated or damaged."""
    p = Path(path)
    r = _Reader(_decompressed(p))
    files: dict[str, int] = {}
    small: dict[str, bytearray] = {}
    open_files: set[str] = set()
    chunk = 0
    while head := r.read(14):
        chunk += 1
        if len(head) < 14 or head[:8] != _MAGIC:
            raise _refuse(p, f"is not an mbstream (mariadb-backup --stream) at chunk {chunk}"
                             + (": the stream ends inside it" if len(head) < 14 else ""))
        kind, plen = head[9:10], struct.unpack("<I", head[10:14])[0]
        name = r.read(plen).decode("utf-8", "replace")
        if kind == b"E":
            open_files.discard(name)
            continue
        if kind not in (b"P", b"S"):
            raise _refuse(p, f"holds an mbstream chunk of unknown type {kind!r} for {name} (chunk {chunk})")
        sparse = struct.unpack("<I", r.read(4))[0] if kind == b"S" else 0
        fixed = r.read(20)
        if len(fixed) < 20:
            raise _refuse(p, f"is truncated: the stream ends inside the chunk of {name}")
        length, offset, crc = struct.unpack("<QQI", fixed)
        sparse_map = r.read(8 * sparse)
        open_files.add(name)
        files[name] = max(files.get(name, 0), offset + length)
        if "/" not in name and offset + length <= _SMALL and not sparse:
            data = r.read(length)
            if len(data) < length:
                raise _refuse(p, f"is truncated: the stream ends inside {name}")
            if zlib.crc32(data) != crc:
                raise _refuse(p, f"is damaged: the checksum of {name} (chunk {chunk}) does not match")
            keep = small.setdefault(name, bytearray())
            keep[len(keep):] = b"\0" * max(0, offset - len(keep))
            keep[offset:offset + length] = data
        elif r.skip(length) < length:
            raise _refuse(p, f"is truncated: the stream ends inside {name}")
        del sparse_map
    if open_files:
        raise _refuse(p, f"is truncated: {len(open_files)} file(s) of the backup never end in it, "
                         f"{sorted(open_files)[0]} among them")
    if not files:
        raise _refuse(p, "holds no file: it is not a mariadb-backup stream")
    return {"files": files, "small": {k: base64.b64encode(bytes(v)).decode() for k, v in small.items()
                                      if files[k] <= _SMALL}}   # a big file's first chunk is not the file


def describe(path: str | os.PathLike) -> dict:
    """scan(), from `NAME.meta.json` when it was written for this size and mtime."""
    p = Path(path)
    st = p.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    meta = p.with_name(p.name + ".meta.json")
    try:
        known = json.loads(meta.read_text())
        if {k: known.get(k) for k in stamp} == stamp and "files" in known:
            return known
    except (OSError, ValueError, TypeError):
        pass
    found = {**stamp, **scan(p)}
    try:
        meta.write_text(json.dumps(found))
    except OSError:
        pass   # a read-only directory: scanned again next time
    return found


@contextmanager
def mirror(path: str | os.PathLike) -> Iterator[Path]:
    """A scratch directory laid out as the backup in the stream `path`, removed on exit: its small
    top-level files whole, the others sparse files of their size (no data written)."""
    p = Path(path).resolve()
    info = describe(p)
    owned = OwnedDir("restore-bot-stream")
    try:
        root = owned.path / "backup"
        root.mkdir()
        for name, size in info["files"].items():
            target = (root / name).resolve()
            if root not in target.parents:
                raise _refuse(p, f"names a file outside the backup: {name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if name in info["small"]:
                target.write_bytes(base64.b64decode(info["small"][name]))
            else:
                with open(target, "wb") as fh:
                    fh.truncate(size)
        yield root
    finally:
        owned.remove()


def extract(path: str | os.PathLike, dst: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Unpack the stream `path` into the new directory `dst` (zstd -d | mbstream -x);
    `progress(compressed bytes read, file size)` as it goes."""
    tool = find_program("mbstream", "xbstream")
    if tool is None:
        raise SnapshotError(f"{path}: mbstream is not installed, and a compressed physical backup is unpacked with it",
                            where=str(path), hint="install it: it comes with mariadb-backup (apt-get install "
                                                  "mariadb-backup)")
    p = Path(path)
    total = p.stat().st_size
    dst.mkdir()
    proc = subprocess.Popen([tool, "-x", "-C", str(dst)], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent())
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for block in _decompressed(p, None if progress is None else lambda done: progress(done, total)):
            proc.stdin.write(block)
        proc.stdin.close()
    except BrokenPipeError:
        pass   # mbstream stopped: its message says why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read().decode("utf-8", "replace").strip()
    if proc.wait() != 0:
        raise _refuse(p, f"mbstream -x failed on it: {err[-400:]}")


def stream_backup(path: Path, read_dir: Callable):
    """`read_dir` (restore.plan.physical.read_backup_dir) of the stream's mirror, as the stream:
    its path the file's, and what it refuses named by the file and the name in the stream."""
    with mirror(path) as root:
        try:
            return replace(read_dir(root), path=path, prepared=False)
        except SnapshotError as e:
            where = f"{path}:" + (e.where or "").removeprefix(str(root)).lstrip("/")
            raise SnapshotError(str(e.message).replace(f"{root}/", f"{path}:"), where=where, hint=e.hint) from None
