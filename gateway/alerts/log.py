"""Every delivery attempt, one JSON line in `<data-dir>/alerts.jsonl` (each worker appends with
one `O_APPEND` write per line, so lines of several workers do not mix), and the markers that
deduplicate deliveries per alert, subject and window across a machine's workers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..redact import Redactor

LOG_FILE = "alerts.jsonl"
MARKERS = "alerts-sent"
_MARKER_AGE_S = 2 * 86400.0


class AlertLog:
    def __init__(self, data_dir: Path | None) -> None:
        self.path = data_dir / LOG_FILE if data_dir is not None else None
        self.rows: list[dict[str, Any]] = []  # this process's attempts, last 100

    def write(self, redactor: Redactor, **row: Any) -> None:
        """One attempt; the whole line passes the redactor (an error may quote a URL)."""
        row = {"at": time.time(), **row}
        line = redactor.text(json.dumps(row, default=str)) + "\n"
        self.rows = [*self.rows[-99:], json.loads(line)]
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_log(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Dedup:
    """At most one delivery per (alert, subject) per `window_s`: in this worker by the time of the
    last one, across the machine's workers by a marker file per fixed window (`O_EXCL`: the
    first worker to create it delivers)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.folder = data_dir / MARKERS if data_dir is not None else None
        self._last: dict[str, float] = {}

    def first(self, alert: str, subject: str, window_s: float) -> bool:
        if window_s <= 0:
            return True
        key = f"{alert}\x00{subject}"
        now = time.time()
        if now - self._last.get(key, -window_s) < window_s:
            return False
        if self.folder is not None and not self._claim(self.folder, key, int(now // window_s)):
            return False
        self._last[key] = now
        return True

    @staticmethod
    def _claim(folder: Path, key: str, window: int) -> bool:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{hashlib.sha256(key.encode()).hexdigest()[:24]}-{window}"
        try:
            os.close(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True

    def sweep(self) -> None:
        """Remove markers of windows long gone."""
        if self.folder is None or not self.folder.is_dir():
            return
        old = time.time() - _MARKER_AGE_S
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < old:
                    path.unlink()
