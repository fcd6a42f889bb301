"""Cancel a request's task when its client hangs up.

Watching granian's `client_disconnect()` costs ~20-40 µs per request (measured), more than all
of the gateway's own logic, and even a per-request timer costs several µs. So requests only
register in a dict, and one sweeper per worker starts watching those that have been in flight
longer than `delay`: fast answers never pay for it, while slow upstream calls and streams are
cancelled within `2 * delay` of the client leaving. (Streams also notice at their next send.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .rsgi import Proto


class DisconnectWatch:
    __slots__ = ("_future", "_proto", "_task", "_watches", "t0")

    def __init__(self, proto: Proto, watches: Watches) -> None:
        self._proto = proto
        self._task = current_task(watches.loop)
        self._future: asyncio.Future[Any] | None = None
        self._watches = watches
        self.t0 = time.monotonic()
        watches.inflight[id(self)] = self

    def start(self) -> None:
        if self._future is None:
            self._future = asyncio.ensure_future(self._proto.client_disconnect())
            self._future.add_done_callback(self._hang_up)

    def _hang_up(self, future: asyncio.Future[Any]) -> None:
        if self._task is not None and not future.cancelled():
            self._task.cancel()

    @property
    def fired(self) -> bool:
        """True when the client went away (the task was cancelled because of it)."""
        future = self._future
        return future is not None and future.done() and not future.cancelled()

    def close(self) -> None:
        self._watches.inflight.pop(id(self), None)
        if self._future is not None:
            self._future.remove_done_callback(self._hang_up)
            self._future.cancel()


class Watches:
    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.inflight: dict[int, DisconnectWatch] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the sweeper's

    def watch(self, proto: Proto) -> DisconnectWatch:
        return DisconnectWatch(proto, self)

    async def sweep(self) -> None:
        self.loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.delay)
            due = time.monotonic() - self.delay
            for watch in list(self.inflight.values()):
                if watch.t0 <= due:
                    watch.start()


def current_task(loop: asyncio.AbstractEventLoop | None) -> asyncio.Task[Any] | None:
    """The running task, found through a known loop when there is one: `asyncio.current_task()`
    asks for the running loop, which on Python 3.11 is a getpid() system call (3 a request)."""
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else asyncio.current_task()
