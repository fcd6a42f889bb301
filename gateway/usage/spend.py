"""Spend per key or group in the current budget period, kept in memory as rows are recorded.

`await tracker.spend("key", "team-a", "month", "Europe/Paris")` seeds the period's total from
the ledger on first use (and again every `resync_s`, which folds in what other workers spent),
then adds every row this process records (`add(row)`, called by `Ledger.record`), so a budget
check costs a dict lookup. The seed and the local additions never overlap: the source must
reflect every row recorded before `spend_since` was called and none recorded after (the Ledger
closes its spool segment as the call begins and keeps the next one open until it returns).

Within one worker the figure is exact; another worker's spend shows up at the next resync
(plus the ingest lag), which bounds how far a shared budget can be overshot. Exact cross-worker
counters are the limiter's job (billing/limiter.py, over Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from ..config.periods import Calendar, Window
from ..config.types import Period
from .record import UsageRecord

Scope = Literal["key", "group"]
ZERO = Decimal(0)


class SpendSource(Protocol):
    async def spend_since(
        self, kind: str, ident: str, since: datetime, on_cut: Callable[[], None] | None = None
    ) -> Decimal:
        """The total over exactly the rows recorded before `on_cut()` is called."""
        ...


@dataclass(slots=True, eq=False)
class _Entry:
    window: Window
    synced: float
    base: Decimal = ZERO  # the ledger's total at the cut
    local: Decimal = ZERO  # rows recorded here after the cut
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    reseeding: bool = False

    def covers(self, started: float) -> bool:
        end = self.window.end
        return self.window.start_ts <= started and (end is None or started < end)


Key = tuple[str, str, str, str]  # kind, ident, period, tz


class SpendTracker:
    def __init__(
        self, source: SpendSource, resync_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self.resync_s = resync_s
        self._clock = clock
        self._calendars: dict[str, Calendar] = {}
        self._entries: dict[Key, _Entry] = {}
        self._by_scope: dict[tuple[str, str], dict[Key, _Entry]] = {}

    async def spend(self, kind: Scope, ident: str, period: Period, tz: str = "UTC") -> Decimal:
        """USD spent by the key or group since the start of the current `period` in zone `tz`.
        Raises what the source raises (e.g. the ledger is unavailable) when it must seed."""
        calendar = self._calendars.get(tz)
        if calendar is None:
            calendar = self._calendars[tz] = Calendar(tz)
        window = calendar.current(period)
        key = (kind, ident, period, tz)
        entry = self._entries.get(key)
        if entry is None or entry.window.name != window.name:
            return await self._seed(key, window)
        await entry.ready.wait()
        if entry.error is not None:  # its seed failed: try again
            return await self._seed(key, window)
        if not entry.reseeding and self._clock() - entry.synced >= self.resync_s:
            entry.reseeding = True  # one refresh at a time; meanwhile the others read this entry
            try:
                return await self._seed(key, window)
            finally:
                entry.reseeding = False
        return entry.base + entry.local

    async def _seed(self, key: Key, window: Window) -> Decimal:
        entry = _Entry(window, self._clock())

        def cut() -> None:  # from now on add() counts into the new entry
            self._entries[key] = entry
            self._by_scope.setdefault(key[:2], {})[key] = entry

        try:
            entry.base = await self._source.spend_since(key[0], key[1], window.start, on_cut=cut)
        except Exception as exc:
            entry.error = exc
            if self._entries.get(key) is entry:
                del self._entries[key]
                self._by_scope[key[:2]].pop(key, None)
            raise
        finally:
            entry.ready.set()
        return entry.base + entry.local

    def add(self, row: UsageRecord) -> None:
        """Count a recorded row into the tracked periods of its key and group."""
        cost = row.cost_usd
        if not cost or not self._by_scope:
            return
        started = row.started_at.timestamp()
        for kind, ident in (("key", row.key_id), ("group", row.group)):
            entries = self._by_scope.get((kind, ident)) if ident is not None else None
            if entries:
                for entry in entries.values():
                    if entry.covers(started):
                        entry.local += cost
