"""One worker's task engine: the shared store, each family's adapter, and the background
poller that refreshes unfinished tasks (with backoff: store.claim_due) and settles them.

Settling: when a task is first seen finished, one end row is recorded (by the worker whose
update finished it); when it ended in a FAILED status and was charged, one refund row with the
negated charge is recorded and the charge is given back to the key's budgets (`Hooks.refund`),
once, however many workers and reads see the failure (the store's atomic claim). A worker that
dies between the claim and the row loses that refund row: the claim is written first so that a
refund is never paid twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Protocol

from ..usage.record import UsageRecord
from .adapter import Seen, TaskAdapter
from .rows import done_row, refund_row
from .store import FAILED, TaskRow, TaskStore

log = logging.getLogger("tollgate.tasks")

MAX_POLL_AGE_S = 24 * 3600.0  # the poller gives up on tasks older than this (reads still refresh)
POLL_BATCH = 64
POLL_CONCURRENCY = 8


class Hooks(Protocol):
    """What the engine needs of its worker (gateway/server/tasks.py implements it)."""

    def record(self, row: UsageRecord) -> None: ...

    async def refund(self, task: TaskRow) -> None:
        """Give the task's charge back to its key's budgets (the limiter's spend counters)."""
        ...


class TaskEngine:
    def __init__(self, store: TaskStore, poll_s: float, hooks: Hooks | None = None) -> None:
        self.store = store
        self.poll_s = poll_s
        self.hooks = hooks
        self.adapters: dict[str, TaskAdapter] = {}
        self.poller: asyncio.Task[None] | None = None

    def register(self, adapter: TaskAdapter) -> None:
        self.adapters[adapter.family] = adapter

    async def add(self, row: TaskRow, rebill: bool = False) -> TaskRow:
        return await self.store.add(row, row.submitted_at + self.poll_s, rebill)

    async def refresh(self, task: TaskRow, hint: str | None = None) -> TaskRow:
        """The task as its upstream reports it now; the stored one when the upstream cannot say."""
        if task.finished:
            await self.settle(task)  # a refund claimed by no one yet (a worker died)
            return task
        adapter = self.adapters.get(task.family)
        seen = await adapter.fetch(task, hint) if adapter is not None else None
        if seen is None:
            return task
        return await self.apply(task, seen)

    async def apply(self, task: TaskRow, seen: Seen) -> TaskRow:
        """Record what the upstream said of the task, then settle it."""
        if await self.store.update(task.id, seen.status, seen.doc, seen.finished, time.time()):
            task = replace(task, status=seen.status, doc=seen.doc, finished=seen.finished)
            if seen.finished and self.hooks is not None:
                self.hooks.record(done_row(task, seen.failed))
        else:  # another worker recorded the end first
            task = await self.store.get(task.id) or task
        await self.settle(task)
        return task

    async def settle(self, task: TaskRow) -> None:
        """Refund a failed or cancelled task's charge, once."""
        if task.status not in FAILED or task.refunded:
            return
        if not await self.store.claim_refund(task.id) or task.cost is None or self.hooks is None:
            return
        adapter = self.adapters.get(task.family)
        refund_type = adapter.refund_type if adapter is not None else f"{task.family}_refund"
        self.hooks.record(refund_row(task, refund_type))
        if task.cost:
            try:
                await self.hooks.refund(task)
            except Exception:  # the ledger row stands; budgets re-seed from the ledger
                log.exception("giving task %s's charge back to its budgets failed", task.id)

    async def poll_once(self) -> int:
        """Refresh the unfinished tasks that are due; how many were."""
        if not self.store.present():  # no task was ever submitted here (another worker may yet)
            return 0
        due = await self.store.claim_due(time.time(), self.poll_s, MAX_POLL_AGE_S, POLL_BATCH)
        limit = asyncio.Semaphore(POLL_CONCURRENCY)

        async def one(task: TaskRow) -> None:
            async with limit:
                try:
                    await self.refresh(task)
                except Exception:  # one task's bug must not stop the others' polls
                    log.exception("refreshing task %s failed", task.id)

        await asyncio.gather(*(one(task) for task in due))
        return len(due)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)  # the polling cadence
            try:
                await self.poll_once()
            except Exception:
                log.exception("polling tasks failed")

    async def start(self) -> TaskEngine:
        if self.store.present():  # else opened by the first submit (or poll, once a file exists)
            await self.store.open()
        self.poller = asyncio.create_task(self._poll_forever(), name="task-poller")
        return self

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        await self.store.close()
