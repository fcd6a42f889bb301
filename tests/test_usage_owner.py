"""Ledger ownership across processes: one owner at a time, take-over when it dies, and queries
(CLI and the admin API's Python function) answered while another process holds the DuckDB file."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gateway.errors import InvalidRequest
from gateway.usage.ledger import Ledger
from gateway.usage.lock import socket_path
from gateway.usage.record import UsageRecord

ROOT = Path(__file__).resolve().parent.parent

# A worker-like process: a Ledger, `n` rows recorded, "owner"/"worker" reported on every change
# of role; stdin closed = shut down (close the ledger: final ingest when owner).
CONTENDER = """
import asyncio, datetime as dt, sys, threading
from decimal import Decimal
from pathlib import Path
from gateway.usage.ledger import Ledger
from gateway.usage.record import UsageRecord

async def main() -> None:
    data, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ledger = Ledger(data, interval_s=0.05)
    await ledger.start()
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        ledger.record(UsageRecord(request_id=f"{tag}-{i}", started_at=now, finished_at=now, key_id=tag,
                                  status=200, cost_usd=Decimal("0.001")))
    print("wrote", n, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
    role = None
    while not done.is_set():
        now_role = "owner" if ledger.owner else "worker"
        if now_role != role:
            role = now_role
            print(role, flush=True)
        await asyncio.sleep(0.02)
    await ledger.close()
    print("closed", flush=True)

asyncio.run(main())
"""


class Contender:
    def __init__(self, data: Path, tag: str, n: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CONTENDER, str(data), tag, str(n)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self.readline() == f"wrote {n}"
        self.role = self.readline()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def readline(self, timeout: float = 15.0) -> str:
        """The next line the process prints ("" at its end); fails the test after `timeout`."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no output from the contender within {timeout} s") from None

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        while (line := self.readline()) not in ("closed", ""):
            self.role = line
        assert self.proc.wait(10) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def cli(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "usage", *args, "--data-dir", str(data)],
                          cwd=ROOT, capture_output=True, text=True, check=check, timeout=60)


def poll(what: Callable[[], object], expected: object, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while (got := what()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def count_rows(data: Path) -> object:
    out = cli(data, "sql", "SELECT count(*) AS n, sum(cost_usd) AS usd FROM usage", "--format", "json").stdout
    return json.loads(out)[0]


def test_one_owner_takeover_after_sigkill_and_no_row_lost(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Contender(data, "a", 300)
    second = Contender(data, "b", 200)
    assert sorted([first.role, second.role]) == ["owner", "worker"]
    owner, other = (first, second) if first.role == "owner" else (second, first)
    assert poll(lambda: count_rows(data), {"n": 500, "usd": "0.500000000"}) == {"n": 500, "usd": "0.500000000"}
    owner.kill()  # no goodbye: the lock is released by the OS, the socket file stays behind
    assert other.readline() == "owner"  # the survivor took the ledger over
    late = Contender(data, "c", 100)  # a worker that starts later spools into the new owner
    assert late.role == "worker"
    assert poll(lambda: count_rows(data), {"n": 600, "usd": "0.600000000"}) == {"n": 600, "usd": "0.600000000"}
    late.stop()
    other.stop()
    # nobody runs now: the CLI opens the file itself
    assert count_rows(data) == {"n": 600, "usd": "0.600000000"}


def test_cli_and_admin_queries_while_another_process_owns_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = Contender(data, "team-a", 40)
    assert holder.role == "owner"
    try:
        with pytest.raises(duckdb.IOException):  # why queries must go through the owner
            duckdb.connect(str(data / "usage.duckdb"), read_only=True)
        assert poll(lambda: count_rows(data)["n"], 40) == 40  # type: ignore[index]
        report = cli(data, "report", "--by", "key", "--format", "csv").stdout
        rows = list(csv.DictReader(io.StringIO(report)))
        assert [(r["key"], r["requests"], r["cost_usd"]) for r in rows] == [("team-a", "40", "0.040000000")]
        table = cli(data, "report", "--by", "day", "--tz", "Asia/Tokyo").stdout
        assert "(1 row)" in table
        for fmt in ("parquet", "csv"):
            out = tmp_path / f"usage.{fmt}"
            assert "wrote 40 rows" in cli(data, "export", "--format", fmt, "--out", str(out)).stdout
            assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall() == [(40,)]
        bad = cli(data, "sql", "DELETE FROM usage", check=False)
        assert bad.returncode == 1 and "read-only" in bad.stderr
        leak = cli(data, "sql", "SELECT * FROM read_text('/proc/self/environ')", check=False)
        assert leak.returncode == 1 and "disabled by configuration" in leak.stderr
        asyncio.run(_admin_queries_from_a_non_owner(data))
    finally:
        holder.stop()


async def _admin_queries_from_a_non_owner(data: Path) -> None:
    ledger = Ledger(data)
    await ledger.start()
    try:
        assert ledger.owner is None
        now = dt.datetime.now(dt.UTC)
        for i in range(300):
            ledger.record(UsageRecord(request_id=f"w-{i}", started_at=now, finished_at=now, key_id="w",
                                      endpoint="x" * 200, cost_usd=Decimal("0.000000001")))
        # read-your-writes from this worker, and an answer far larger than one socket buffer
        answer = await ledger.query("SELECT request_id, endpoint FROM usage WHERE key_id = 'w' ORDER BY 1")
        assert answer["columns"] == ["request_id", "endpoint"] and len(answer["rows"]) == 300
        assert await ledger.spend_since("key", "w", now - dt.timedelta(hours=1)) == Decimal("0.000000300")
        with pytest.raises(InvalidRequest):
            await ledger.query("DROP TABLE usage")
    finally:
        await ledger.close()


def test_a_stale_socket_file_does_not_block_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = Contender(data, "k", 5)
    holder.kill()
    assert Path(socket_path(data)).exists()
    assert count_rows(data) == {"n": 5, "usd": "0.005000000"}
