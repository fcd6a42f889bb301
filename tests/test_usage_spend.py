"""SpendTracker: period spend seeded from the ledger, kept current by recorded rows, never
counting a row twice when it reaches DuckDB later."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config.periods import window_at
from gateway.usage.client import LedgerUnavailable
from gateway.usage.ledger import Ledger
from gateway.usage.record import UsageRecord
from gateway.usage.spend import SpendTracker
from gateway.usage.spool import SpoolWriter


def row(rid: str, cost: str, key: str = "a", group: str = "g", when: dt.datetime | None = None) -> UsageRecord:
    # stamped when made (not when the module was imported): a run that crosses midnight, or
    # Sunday's end, would otherwise add rows dated in the period before the one being tracked
    when = when or dt.datetime.now(dt.UTC)
    return UsageRecord(request_id=rid, started_at=when, finished_at=when, key_id=key, group=group,
                       cost_usd=Decimal(cost))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def scenario(data: Path) -> None:
    month_start = window_at("month", ZoneInfo("UTC"), time.time()).start
    other_worker = SpoolWriter(data / "spool")
    other_worker.append(row("h1", "1.5"))
    other_worker.append(row("h2", "2", key="b"))
    other_worker.append(row("last-month", "100", when=month_start - dt.timedelta(seconds=1)))
    other_worker.close()
    ledger = Ledger(data, interval_s=0.05)
    clock = Clock()
    ledger.spend = tracker = SpendTracker(ledger, resync_s=5, clock=clock)
    await ledger.start()
    try:
        assert ledger.owner is not None
        assert await tracker.spend("key", "a", "month") == Decimal("1.5")
        ledger.record(row("r1", "0.25"))  # counted at once, without waiting for the ingest
        ledger.record(row("old", "7", when=month_start - dt.timedelta(days=3)))  # another period
        assert await tracker.spend("key", "a", "month") == Decimal("1.75")

        # a seed in flight while rows are recorded: before the cut they are in the ledger's
        # answer, after it they are counted here; no row is in both
        seed = asyncio.get_running_loop().create_task(tracker.spend("group", "g", "month"))
        ledger.record(row("before-cut", "0.01"))
        await asyncio.sleep(0)  # the seed closes the spool segment and registers
        ledger.record(row("after-cut", "0.02"))
        assert await seed == Decimal("1.5") + Decimal("2") + Decimal("0.25") + Decimal("0.01") + Decimal("0.02")

        async def all_ingested() -> bool:
            answer = await ledger.query("SELECT count(*) FROM usage")
            return bool(answer["rows"] == [[7]])

        await until(all_ingested)
        assert await all_ingested()
        late = SpoolWriter(data / "spool")  # another worker spends meanwhile
        late.append(row("other", "3"))
        late.close()
        assert await tracker.spend("group", "g", "month") == Decimal("3.78")  # not resynced yet
        clock.t += 5
        assert await tracker.spend("group", "g", "month") == Decimal("6.78")  # resynced: no double count
        assert await tracker.spend("key", "a", "month") == Decimal("4.78")
        assert await tracker.spend("key", "b", "total") == Decimal("2")
        assert await tracker.spend("key", "a", "day", "Pacific/Kiritimati") >= Decimal(0)
    finally:
        await ledger.close()


def test_spend_is_seeded_then_kept_current(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))


class FlakySource:
    def __init__(self) -> None:
        self.calls = 0

    async def spend_since(self, kind: str, ident: str, since: dt.datetime,
                          on_cut: Callable[[], None] | None = None) -> Decimal:
        self.calls += 1
        if self.calls == 1:
            raise LedgerUnavailable("no owner")
        if on_cut is not None:
            on_cut()
        return Decimal("10")


def test_a_failed_seed_raises_and_the_next_call_retries() -> None:
    async def run() -> None:
        source = FlakySource()
        tracker = SpendTracker(source)
        with pytest.raises(LedgerUnavailable):
            await tracker.spend("key", "a", "week")
        tracker.add(row("lost", "1"))  # nothing tracked: ignored
        assert await tracker.spend("key", "a", "week") == Decimal("10")
        tracker.add(row("x", "1"))
        tracker.add(row("free", "0", key="a"))
        assert await tracker.spend("key", "a", "week") == Decimal("11")
        assert source.calls == 2

    asyncio.run(run())
