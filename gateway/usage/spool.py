"""The durable spool: each process appends usage rows as JSON lines to its own segment file.

A row is written with one `os.write` (no Python buffering), so it survives the process being
killed; no fsync per row (a machine crash may lose the last instants, a process kill does not).

A segment's life: created as `<pid>-<ns>-<seq>.tmp`, locked (flock, held by the writer for as
long as it writes), renamed `.open`; closed (renamed `.jsonl`) every `rotate_s` seconds or
`rotate_bytes` bytes, which makes it ingestible. An `.open` segment whose lock is free has lost
its writer (killed, or exited without closing): the ingester cuts it after its last complete
line and closes it. The lock, not the pid in the name, says whether the writer lives, so a
restarted container whose new workers reuse the old pids does not strand the old segments.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

import msgspec

from .record import UsageRecord

NEW, OPEN, CLOSED = ".tmp", ".open", ".jsonl"
log = logging.getLogger("tollgate.usage")


class SpoolWriter:
    def __init__(self, directory: Path, rotate_s: float = 0.5, rotate_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.rotate_s = rotate_s
        self.rotate_bytes = rotate_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._written = 0
        self._seq = 0

    def _open(self) -> int:
        self._seq += 1
        stem = self.directory / f"{os.getpid()}-{time.time_ns()}-{self._seq}"
        fd = os.open(stem.with_suffix(NEW), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file: nobody else holds it
        os.rename(stem.with_suffix(NEW), stem.with_suffix(OPEN))  # visible only once locked
        self._fd, self._path = fd, stem.with_suffix(OPEN)
        self._opened, self._written = time.monotonic(), 0
        return fd

    def append(self, row: UsageRecord) -> None:
        fd = self._fd if self._fd is not None else self._open()
        line = self._encoder.encode(row) + b"\n"
        os.write(fd, line)
        self._written += len(line)
        if self._written >= self.rotate_bytes:
            self.rotate(force=True)

    def rotate(self, force: bool = False) -> None:
        """Close the current segment if it is old enough (or `force`), making it ingestible."""
        if self._fd is None or self._path is None:
            return
        if not force and time.monotonic() - self._opened < self.rotate_s:
            return
        try:
            self._path.rename(self._path.with_suffix(CLOSED))  # renamed while still locked
        except FileNotFoundError:  # the spool directory was removed under us: start afresh
            log.error("usage spool segment %s vanished; its rows are lost", self._path)
            self.directory.mkdir(parents=True, exist_ok=True)
        finally:
            os.close(self._fd)
            self._fd, self._path = None, None

    def close(self) -> None:
        self.rotate(force=True)


def ready_segments(directory: Path) -> list[Path]:
    """Closed segments, plus open ones whose writer is gone (cut and closed here first)."""
    if not directory.is_dir():
        return []
    for path in directory.glob(f"*{OPEN}"):
        with contextlib.suppress(OSError):  # vanished meanwhile: closed by its writer
            _recover_if_orphaned(path)
    return sorted(directory.glob(f"*{CLOSED}"))


def _recover_if_orphaned(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its writer is alive (possibly this very process)
        if not path.exists():  # closed (renamed) between our glob and our lock
            return
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        end = data.rfind(b"\n") + 1  # a line cut by the kill is dropped, never half-loaded
        if end == 0:
            path.unlink()
            return
        if end < size:
            os.ftruncate(fd, end)
        path.rename(path.with_suffix(CLOSED))
    finally:
        os.close(fd)
