"""The spool and the ingest: rows survive SIGKILL, every request is counted exactly once."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec

from gateway.usage.client import call
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now(dt.UTC)


def row(rid: str, cost: str = "0.000002500") -> UsageRecord:
    return UsageRecord(request_id=rid, started_at=NOW, finished_at=NOW, key_id="k", status=200,
                       prompt_tokens=3, completion_tokens=4, cost_usd=Decimal(cost), tags=["a", "b"])


def total(data: Path) -> list[object]:
    answer = call(data, {"op": "query", "sql": "SELECT count(*), count(DISTINCT request_id), sum(cost_usd) FROM usage"})
    assert "error" not in answer, answer
    return list(answer["rows"][0])


WRITER = """
import datetime as dt, os, signal, sys, time
from decimal import Decimal
from pathlib import Path
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter
n = int(sys.argv[2])
w = SpoolWriter(Path(sys.argv[1]), rotate_s=0.0)
now = dt.datetime.now(dt.UTC)
for i in range(n):
    w.append(UsageRecord(request_id=f"w{i}", started_at=now, finished_at=now, cost_usd=Decimal("0.000002500")))
    if i % 100 == 99:
        w.rotate()  # some segments closed, the last one still open at the kill
os.write(w._fd, b'{"request_id": "torn", "started_')  # killed in the middle of a write
print("written", flush=True)
time.sleep(60)
"""


def test_rows_of_a_sigkilled_writer_are_ingested_exactly_once(tmp_path: Path) -> None:
    data, n = tmp_path / "data", 1234
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data / "spool"), str(n)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    spool = data / "spool"
    assert any(p.suffix == ".open" for p in spool.iterdir())  # the killed writer's last segment
    backup = tmp_path / "backup"
    shutil.copytree(spool, backup)
    # "restart": the CLI finds no owner, takes the lock, ingests the leftovers, answers
    assert total(data) == [n, n, str(Decimal("0.000002500") * n)]
    assert not [p for p in spool.iterdir() if not p.name.endswith(".bad")]
    # a crash after COMMIT but before the segments were deleted: the same rows come back
    for p in backup.iterdir():
        shutil.copy(p, spool / p.name)
    assert total(data) == [n, n, str(Decimal("0.000002500") * n)]


def test_the_flock_not_the_pid_says_whether_a_writer_lives(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    live = SpoolWriter(spool, rotate_s=3600)
    live.append(row("mine"))
    # a segment left by a previous container whose pid this very process now has
    orphan = spool / f"{os.getpid()}-1-1.open"
    orphan.write_bytes(b"".join(msgspec.json.encode(row(f"old{i}")) + b"\n" for i in range(3)))
    ready = ready_segments(spool)
    assert [p.name for p in ready] == [orphan.with_suffix(".jsonl").name]  # the live one is untouched
    store = LedgerStore(tmp_path / "usage.duckdb")
    assert store.ingest(ready) == 3
    live.close()
    assert store.ingest(ready_segments(spool)) == 1


def test_an_open_segment_is_locked_by_its_writer(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path / "spool", rotate_s=3600)
    w.append(row("x"))
    (path,) = (tmp_path / "spool").glob("*.open")
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the writer's lock should be held")
        except BlockingIOError:
            pass
    finally:
        os.close(fd)
    w.close()
    assert [p.suffix for p in (tmp_path / "spool").iterdir()] == [".jsonl"]


def test_duplicates_within_a_batch_and_against_the_table_count_once(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for _ in range(2):
        w = SpoolWriter(spool)
        for rid in ("r1", "r2", "r1"):
            w.append(row(rid))
        w.close()
    store = LedgerStore(tmp_path / "usage.duckdb")
    assert store.ingest(ready_segments(spool)) == 2
    w = SpoolWriter(spool)
    w.append(row("r2"))
    w.append(row("r3"))
    w.close()
    assert store.ingest(ready_segments(spool)) == 1
    got = store.query("SELECT request_id, cost_usd, tags FROM usage ORDER BY 1")["rows"]
    assert got == [["r1", "0.000002500", ["a", "b"]], ["r2", "0.000002500", ["a", "b"]],
                   ["r3", "0.000002500", ["a", "b"]]]


def test_an_unreadable_segment_is_set_aside_and_the_rest_loads(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    w = SpoolWriter(spool)
    w.append(row("good1"))
    w.close()
    (spool / "1-2-3.jsonl").write_bytes(b'{"request_id": "x", "started_at": "not a time"}\n')
    w = SpoolWriter(spool)
    w.append(row("good2"))
    w.close()
    store = LedgerStore(tmp_path / "usage.duckdb")
    assert store.ingest(ready_segments(spool)) == 2
    assert [p.name for p in spool.iterdir()] == ["1-2-3.jsonl.bad"]
    assert store.ingest(ready_segments(spool)) == 0


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    w = SpoolWriter(tmp_path / "spool", rotate_s=3600, rotate_bytes=2000)
    for i in range(20):
        w.append(row(f"r{i}"))
    closed = list((tmp_path / "spool").glob("*.jsonl"))
    assert len(closed) >= 3 and all(p.stat().st_size < 2000 + 400 for p in closed)
    w.close()
    store = LedgerStore(tmp_path / "usage.duckdb")
    assert store.ingest(ready_segments(tmp_path / "spool")) == 20
