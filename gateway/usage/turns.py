"""The two threads that take turns on the ledger owner's DuckDB connection.

- The foreground thread, at the owner's priority (nice 10): queries, credits, spend, opening the
  file, the ingest a query does first (read-your-writes), the last ingest before a close.
- The background thread, at nice 19: the periodic ingest. At full speed the owner shares a core
  with the workers, and an ingest batch at nice 10 was picked between the steps of the requests
  it shared the core with: at one request at a time, p99 ~2.0 -> ~0.8 ms (benchmarks/README.md).

A foreground call never waits behind a background batch: submitting it interrupts the batch
(the store rolls it back and leaves its segments in the spool), and a background batch does not
start while a foreground call is queued. A background batch that waits too long for the core is
taken over by the foreground (owner.py), so the ledger keeps up when the workers saturate it.
Two threads rather than one re-niced: an unprivileged process may lower a thread's priority but
never raise it again (RLIMIT_NICE).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

BACKGROUND_NICE = 19
T = TypeVar("T")


def _nothing() -> None:
    return None


class Turns:
    """`interrupt`: stops the background batch's statements (called with the turn state held)."""

    def __init__(self, interrupt: Callable[[], None] = _nothing) -> None:
        self.interrupt = interrupt
        self.background_tid: int | None = None
        self._fg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-db")
        self._bg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-bg",
                                      initializer=self._lower_priority)
        self._turn = threading.Lock()  # whoever holds it uses the connection
        self._state = threading.Lock()  # guards the two fields below
        self._queued = 0  # foreground calls submitted that do not hold the turn yet
        self._background_busy = False

    def _lower_priority(self) -> None:
        self.background_tid = threading.get_native_id()
        with contextlib.suppress(OSError):  # the nice value is per thread on Linux
            os.setpriority(os.PRIO_PROCESS, self.background_tid, BACKGROUND_NICE)

    async def foreground(self, fn: Callable[..., T], *args: Any) -> T:
        with self._state:
            self._queued += 1
            if self._background_busy:
                self.interrupt()
        try:
            job: Future[T] = self._fg.submit(self._run_foreground, fn, args)
        except RuntimeError:  # shut down
            with self._state:
                self._queued -= 1
            raise
        job.add_done_callback(self._unqueue_if_cancelled)
        return await asyncio.wrap_future(job)

    def _run_foreground(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._turn:
            with self._state:
                self._queued -= 1
            return fn(*args)

    def _unqueue_if_cancelled(self, job: Future[Any]) -> None:
        if job.cancelled():  # never ran: it holds no place in the queue any more
            with self._state:
                self._queued -= 1

    def background(self, fn: Callable[[], int]) -> asyncio.Future[int | None]:
        """Run `fn` on the background thread; None if a foreground call came first."""
        return asyncio.wrap_future(self._bg.submit(self._run_background, fn))

    def _run_background(self, fn: Callable[[], int]) -> int | None:
        with self._turn:
            with self._state:
                if self._queued:
                    return None
                self._background_busy = True
            try:
                return fn()
            finally:
                with self._state:
                    self._background_busy = False

    def shutdown(self) -> None:
        with self._state:
            if self._background_busy:
                self.interrupt()
        self._bg.shutdown(wait=True)
        self._fg.shutdown(wait=True)
