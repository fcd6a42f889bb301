"""Budget periods, calendar-aligned in the bundle's time zone.

`day` starts at local midnight, `week` on Monday at local midnight (ISO weeks), `month` on the
1st, and `total` never ends. A period is named by its local start (`month:2025-01-01`), so its
counter key is the same in every process and on every machine that agrees on the zone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .types import Period

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # e.g. "day:2025-01-31", "total"
    start: datetime  # aware
    end: float | None  # epoch seconds when the period ends; None for `total`
    start_ts: float = 0.0  # `start` in epoch seconds

    def seconds_left(self, now: float) -> float | None:
        return None if self.end is None else max(0.0, self.end - now)


def window_at(period: Period, zone: ZoneInfo, now: float) -> Window:
    """The period containing the epoch instant `now`."""
    if period == "total":
        return Window("total", _EPOCH, None, 0.0)
    local = datetime.fromtimestamp(now, zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, midnight.date() + timedelta(days=1)
    elif period == "week":
        start = midnight - timedelta(days=midnight.weekday())
        end = start.date() + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        end = (start.date() + timedelta(days=32)).replace(day=1)
    # Re-attach the zone to the calendar dates, so DST changes inside the period are respected.
    start = datetime(start.year, start.month, start.day, tzinfo=zone)
    stop = datetime(end.year, end.month, end.day, tzinfo=zone)
    return Window(f"{period}:{start.date().isoformat()}", start, stop.timestamp(), start.timestamp())


class Calendar:
    """Current windows, recomputed only when one ends: the hot path pays a dict lookup."""

    __slots__ = ("_cache", "zone")

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._cache: dict[Period, Window] = {}

    def current(self, period: Period, now: float | None = None) -> Window:
        t = time.time() if now is None else now
        w = self._cache.get(period)
        if w is None or (w.end is not None and t >= w.end) or t < w.start_ts:
            w = self._cache[period] = window_at(period, self.zone, t)
        return w
