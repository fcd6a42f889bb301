"""Deadlines without a timer per request: what has one registers in a dict, and one callback per
event loop and period checks them all, only while any are registered (an idle worker does not
wake). A uvloop timer per request (`call_later` + `cancel`, or `asyncio.timeout`) cost ~1.5 µs
alone and ~3% of a worker's GIL time in place (measured); the price is precision: a deadline is
noticed up to one period late. Used by the request body's read deadline (server/intake.py) and
the h1 client's upstream timeouts (providers/transport/h1connection.py)."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Checked(Protocol):
    def check(self, now: float) -> None:
        """Called every period with the loop's `time()`: act if the deadline has passed."""


class Sweep:
    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self.live: dict[int, Checked] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Checked) -> None:
        self.live[id(item)] = item
        if self._handle is None:
            self._handle = self.loop.call_later(self.period, self._sweep)

    def discard(self, item: Checked) -> None:
        self.live.pop(id(item), None)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        for item in list(self.live.values()):
            item.check(now)
        if self.live:
            self._handle = self.loop.call_later(self.period, self._sweep)


_sweeps: dict[tuple[asyncio.AbstractEventLoop, float], Sweep] = {}


def sweep_of(loop: asyncio.AbstractEventLoop, period: float) -> Sweep:
    """The loop's sweep of that period (one per loop and period)."""
    found = _sweeps.get((loop, period))
    if found is None:
        if len(_sweeps) > 64:  # loops of finished tests: keep only live ones
            for old in [k for k in _sweeps if k[0].is_closed()]:
                del _sweeps[old]
        found = _sweeps[(loop, period)] = Sweep(loop, period)
    return found


def stop_sweeps(loop: asyncio.AbstractEventLoop) -> None:
    """The loop is closing (a worker's stop): no sweep callback stays scheduled on it."""
    for (owner, _), sweep in list(_sweeps.items()):
        if owner is loop:
            sweep.stop()
