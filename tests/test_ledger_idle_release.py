"""The ledger owner lets DuckDB go when idle (`--idle-release`, settings.ledger_idle_release_s)
by replacing its process image: same pid, same lock, same socket; rows and queries that come
later load it again, and nothing is lost on the way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from gateway.usage.lock import try_lock
from tests.test_usage_owner import Contender, count_rows, poll

ROOT = Path(__file__).resolve().parent.parent


def duckdb_loaded(pid: int) -> bool:
    return "duckdb" in Path(f"/proc/{pid}/maps").read_text()


def until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_idle_owner_lets_duckdb_go_and_keeps_the_ledger(tmp_path: Path) -> None:
    data = tmp_path / "data"
    owner = subprocess.Popen(
        [sys.executable, "-m", "gateway.usage.ingester", "--data-dir", str(data), "--policies",
         str(ROOT / "policies"), "--interval", "0.05", "--idle-release", "0.3", "--no-parquet"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert until(lambda: (data / "ingest.lock").exists() and try_lock(data) is None)
        assert not duckdb_loaded(owner.pid)  # nothing to ingest yet: not loaded at all
        first = Contender(data, "a", 50)
        assert first.role == "worker"
        assert poll(lambda: count_rows(data), {"n": 50, "usd": "0.050000000"}) == {"n": 50, "usd": "0.050000000"}
        assert until(lambda: not duckdb_loaded(owner.pid)), "DuckDB still loaded after the idle period"
        assert owner.poll() is None and try_lock(data) is None  # same process, still the owner
        # priorities are per thread (usage/turns.py): the process is not lowered, so re-executions
        # cannot add up
        assert os.getpriority(os.PRIO_PROCESS, owner.pid) == os.nice(0)
        second = Contender(data, "b", 30)
        assert second.role == "worker"
        assert poll(lambda: count_rows(data), {"n": 80, "usd": "0.080000000"}) == {"n": 80, "usd": "0.080000000"}
        assert until(lambda: not duckdb_loaded(owner.pid))
        first.stop()
        second.stop()
    finally:
        owner.send_signal(signal.SIGTERM)
        _, err = owner.communicate(timeout=30)
    assert owner.returncode == 0, err
    assert err.count("letting DuckDB go") >= 2
    assert count_rows(data) == {"n": 80, "usd": "0.080000000"}  # the CLI alone, after the owner left
    assert not os.path.exists(data / "ledger.sock")


def test_owner_answers_a_probe_and_a_new_ledgers_spend_without_duckdb(tmp_path: Path) -> None:
    """`tollgate serve` probes the socket by connecting and closing; budgets ask the spend of a
    ledger that has nothing yet. Neither needs DuckDB (~65 MB, ~0.3 s before the first answer);
    the first spooled row does, and the spend then counts it."""
    from gateway.usage.client import call
    from gateway.usage.lock import socket_path

    data = tmp_path / "data"
    owner = subprocess.Popen(
        [sys.executable, "-m", "gateway.usage.ingester", "--data-dir", str(data), "--policies",
         str(ROOT / "policies"), "--interval", "0.05", "--no-parquet"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    spend = {"op": "spend", "kind": "key", "ident": "a", "since": "2000-01-01T00:00:00+00:00"}
    try:
        assert until(lambda: os.path.exists(socket_path(data)))
        for _ in range(3):  # what the serve command's readiness probe does
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(socket_path(data))
        assert call(data, {"op": "nonsense"}) == {"error": "unknown op 'nonsense'"}
        assert call(data, spend) == {"spend": "0E-9"}  # as DuckDB's DECIMAL(38, 9) reads
        assert not duckdb_loaded(owner.pid)
        assert not (data / "usage.duckdb").exists()
        first = Contender(data, "a", 50)
        assert first.role == "worker"
        # once its segment is closed (every 0.05 s here) the spend counts it
        assert until(lambda: Decimal(call(data, spend)["spend"]) == Decimal("0.05"))
        assert duckdb_loaded(owner.pid)
        first.stop()
    finally:
        owner.send_signal(signal.SIGTERM)
        _, err = owner.communicate(timeout=30)
    assert owner.returncode == 0, err
