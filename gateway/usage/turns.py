"""The threads that take turns on the ledger owner's DuckDB connection, each at its own priority.

- foreground, nice 10: queries, credits, spend, opening the file, the ingest a query does first
  (read-your-writes), the last ingest before a close. Below the workers: a console page's scans
  give way to the relay.
- background, nice 19: the periodic ingest. At full speed the owner shares a core with the
  workers, and an ingest batch at nice 10 was picked between the steps of the requests it shared
  the core with: at one request at a time, p99 ~2.2 -> ~0.9 ms (benchmarks/README.md).
- overdue, the process's own priority: rows the background did not get to in time (owner.py
  `TAKE_OVER_AFTER_S`). On a saturated core neither nice 10 nor 19 gets the CPU the ingest needs
  (~10 µs a row) and the spool grew without bound; at the workers' priority it keeps up.

A foreground or overdue call never waits behind a background batch: submitting it interrupts the
batch, again every `REINTERRUPT_S` while it waits (the store rolls the batch back and leaves its
segments in the spool), and a background batch does not start while such a call is queued.
Separate threads rather than one re-niced: an unprivileged process may lower a thread's
priority but never raise it again (RLIMIT_NICE).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

FOREGROUND_NICE = 10
BACKGROUND_NICE = 19
REINTERRUPT_S = 0.05
T = TypeVar("T")


def _nothing() -> None:
    return None


def lower_priority(nice: int) -> int:
    """This thread at `nice` (the value is per thread on Linux), never higher than it already is;
    returns its thread id."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    return tid


class Turns:
    """`interrupt`: stops the background batch's statements; a no-op when none runs (the store
    knows: batch_load.py), so it is called without asking."""

    def __init__(self, interrupt: Callable[[], None] = _nothing) -> None:
        self.interrupt = interrupt
        self.tids: dict[str, int] = {}  # lane -> its thread, once started
        self._fg = self._lane("ledger-db", FOREGROUND_NICE)
        self._bg = self._lane("ledger-bg", BACKGROUND_NICE)
        self._due = self._lane("ledger-due", None)
        self._turn = threading.Lock()  # whoever holds it uses the connection
        self._state = threading.Lock()  # guards the field below
        self._queued = 0  # foreground and overdue calls submitted that do not hold the turn yet

    def _lane(self, name: str, nice: int | None) -> ThreadPoolExecutor:
        def started() -> None:
            self.tids[name] = lower_priority(nice) if nice is not None else threading.get_native_id()

        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=started)

    async def foreground(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._fg, fn, args)

    async def overdue(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._due, fn, args)

    async def _call(self, lane: ThreadPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._state:
            self._queued += 1
        self.interrupt()
        try:
            job: Future[T] = lane.submit(self._run, fn, args)
        except RuntimeError:  # shut down
            with self._state:
                self._queued -= 1
            raise
        job.add_done_callback(self._unqueue_if_cancelled)
        return await asyncio.wrap_future(job)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        # Interrupted again while it waits: DuckDB drops an interrupt that comes just before a
        # statement starts, and a starved background thread spends most of its time just there.
        while not self._turn.acquire(timeout=REINTERRUPT_S):
            self.interrupt()
        try:
            with self._state:
                self._queued -= 1
            return fn(*args)
        finally:
            self._turn.release()

    def _unqueue_if_cancelled(self, job: Future[Any]) -> None:
        if job.cancelled():  # never ran: it holds no place in the queue any more
            with self._state:
                self._queued -= 1

    def background(self, fn: Callable[[], int]) -> asyncio.Future[int | None]:
        """Run `fn` on the background thread; None if another call came first."""
        return asyncio.wrap_future(self._bg.submit(self._run_background, fn))

    def _run_background(self, fn: Callable[[], int]) -> int | None:
        with self._turn:
            with self._state:
                if self._queued:
                    return None
            return fn()

    def shutdown(self) -> None:
        self.interrupt()
        self._bg.shutdown(wait=True, cancel_futures=True)  # a batch not started yet is not needed
        for lane in (self._due, self._fg):
            lane.shutdown(wait=True)
