"""Who owns the ledger: an flock on `<data_dir>/ingest.lock`, and where the owner listens.
(No DuckDB import here: processes that do not own the ledger never load it.)"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

LEDGER_FILE = "usage.duckdb"  # in the data directory


def socket_path(data_dir: Path) -> str:
    """`<data_dir>/ledger.sock`; a Unix socket path is limited to 107 bytes, so a deep data dir
    gets a short name in /tmp derived from its path instead."""
    path = str(data_dir.resolve() / "ledger.sock")
    if len(path.encode()) <= 100:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return f"/tmp/tollgate-ledger-{digest}.sock"


def try_lock(data_dir: Path) -> int | None:
    """The lock's file descriptor when this process now owns the ledger, else None. The OS
    releases the lock when the owner dies, however it dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
