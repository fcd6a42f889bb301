"""The owner's periodic ingest runs on a nice-19 background thread and its queries on a nice-10
foreground one; a query never waits behind a batch (it interrupts it: the batch rolls back and
leaves its rows to the query's own ingest), and rows the background does not get to in time are
ingested at the process's own priority (the overdue thread)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.usage import owner as owner_module
from gateway.usage.batch_load import BatchLoader
from gateway.usage.lock import try_lock
from gateway.usage.owner import Owner
from gateway.usage.spool import ready_segments
from gateway.usage.turns import BACKGROUND_NICE, FOREGROUND_NICE

from .test_ledger_batching import age, count, spool_rows

SLOW = "SELECT count(*) FROM range(100000000000) a, range(10) b"  # hours, unless interrupted


async def started_owner(data: Path) -> Owner:
    fd = try_lock(data)
    assert fd is not None
    owner = Owner(data, fd, lambda: None, parquet=None)
    await owner.start()
    spool_rows(data, "first", 2)  # opens the file (DuckDB) through a query
    assert await count(owner) == 2
    return owner


async def until(check: Any, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_each_thread_has_its_priority(tmp_path: Path) -> None:
    async def scenario() -> dict[str, int]:
        owner = await started_owner(tmp_path)
        try:
            spool_rows(tmp_path, "bg", 5)
            age(tmp_path, owner_module.INGEST_MAX_WAIT_S + 0.1)
            assert await owner.ingest_due() == 5  # the background thread
            spool_rows(tmp_path, "due", 1)
            age(tmp_path, owner_module.TAKE_OVER_AFTER_S + 0.1)
            assert await owner.ingest_due() == 1  # the overdue thread
            assert await count(owner) == 8
            fg = await owner._call(threading.get_native_id)
            assert owner._turns.tids["ledger-db"] == fg
            return {lane: os.getpriority(os.PRIO_PROCESS, tid) for lane, tid in owner._turns.tids.items()}
        finally:
            await owner.close()

    before = os.getpriority(os.PRIO_PROCESS, 0)
    nice = asyncio.run(scenario())
    assert nice == {"ledger-bg": BACKGROUND_NICE, "ledger-db": min(19, max(before, FOREGROUND_NICE)),
                    "ledger-due": before}
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_query_interrupts_a_running_background_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    insert = BatchLoader._insert
    slow_started = threading.Event()

    def slow_in_background(self: BatchLoader, con: Any, parquet: Any, files: list[Path]) -> int:
        if self.preemptible:  # the background batch only: the query's own ingest is not slowed
            slow_started.set()
            self.step(con, "BEGIN")
            try:
                self.step(con, SLOW)
            finally:
                self.settle(check=False)
                con.execute("ROLLBACK")
        return insert(self, con, parquet, files)

    monkeypatch.setattr(BatchLoader, "_insert", slow_in_background)

    async def scenario() -> None:
        owner = await started_owner(tmp_path)
        try:
            spool_rows(tmp_path, "late", 4)
            age(tmp_path, owner_module.INGEST_MAX_WAIT_S + 0.1)
            periodic = asyncio.ensure_future(owner.ingest_due())
            await until(slow_started.is_set)
            t0 = time.monotonic()
            assert await count(owner) == 6  # the batch's rows, ingested by the query itself
            assert time.monotonic() - t0 < 30  # not the hours of SLOW
            assert await periodic == 0  # the batch gave way (its take-over found nothing left)
            assert ready_segments(tmp_path / "spool") == []
            assert await count(owner) == 6  # rolled back: nothing twice
        finally:
            await owner.close()

    asyncio.run(scenario())


def test_the_foreground_takes_over_rows_the_background_does_not_get_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(owner_module, "TAKE_OVER_AFTER_S", owner_module.INGEST_MAX_WAIT_S + 1.0)

    async def scenario() -> None:
        owner = await started_owner(tmp_path)
        starved = threading.Event()
        try:
            # A starved background thread: busy with something else until the test lets it go.
            owner._turns._bg.submit(starved.wait, 60)
            spool_rows(tmp_path, "waiting", 3)
            age(tmp_path, owner_module.INGEST_MAX_WAIT_S + 0.1)
            t0 = time.monotonic()
            assert await owner.ingest_due() == 3  # by the overdue thread, after the take-over delay
            assert "ledger-due" in owner._turns.tids
            assert 0.5 < time.monotonic() - t0 < 20
            assert ready_segments(tmp_path / "spool") == []
            starved.set()  # the batch queued behind it runs, finds nothing left, and ends
            await asyncio.wrap_future(owner._turns._bg.submit(lambda: None))
            background_batches: list[int] = []
            run_background = owner._ingest_background

            def counted(store: Any) -> int:
                background_batches.append(1)
                return run_background(store)

            monkeypatch.setattr(owner, "_ingest_background", counted)
            spool_rows(tmp_path, "held", 2)
            age(tmp_path, owner_module.INGEST_MAX_WAIT_S + 0.1)
            assert await owner.ingest_due() == 2  # for a while after a take-over: not the background
            assert background_batches == []
            owner._saturated_until = 0.0  # the hold is over
            spool_rows(tmp_path, "fresh", 2)
            age(tmp_path, owner_module.INGEST_MAX_WAIT_S + 0.1)
            assert await owner.ingest_due() == 2
            assert background_batches == [1]
            spool_rows(tmp_path, "old", 2)
            age(tmp_path, owner_module.TAKE_OVER_AFTER_S + 0.1)  # already too old: overdue at once
            assert await owner.ingest_due() == 2
            assert background_batches == [1]
            assert await count(owner) == 11
        finally:
            starved.set()
            await owner.close()

    asyncio.run(scenario())
