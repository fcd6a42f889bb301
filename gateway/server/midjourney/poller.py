"""A Midjourney task's life after its submit: refreshed from its upstream on fetch and by a
background poller in every worker, refunded once if it fails.

Refunds: when a billed task is first seen in FAILURE or CANCEL (no image came of it), one usage
row with the negated cost is recorded (`request_id` = "<submit's request id>-refund",
`error_type` = "mj_refund"). The store's atomic claim makes that happen once however many
workers and fetches see the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from ...errors import GatewayError
from ...midjourney.tasks import MjRuntime, TaskRow
from ...providers.wire import midjourney as wire
from ...usage.record import UsageRecord
from ..attempts import AttemptFailed
from ..state import WorkerState
from .runtime import call_upstream, runtime

log = logging.getLogger("tollgate.midjourney")

MAX_POLL_AGE_S = 24 * 3600.0  # the poller gives up on tasks older than this (fetch still works)
POLL_BATCH = 64
POLL_CONCURRENCY = 8
REFUNDED = frozenset({"FAILURE", "CANCEL"})  # ended without a result: the charge is given back


def view(task: TaskRow) -> bytes:
    """The task document as its owner sees it (under the gateway's id for the task)."""
    return task.doc if task.id == task.upstream_id else wire.with_id(task.doc, task.id)


async def refresh(state: WorkerState, mj: MjRuntime, task: TaskRow, mode: str | None = None) -> TaskRow:
    """The task as its upstream reports it now; the stored one when the upstream cannot say
    (unreachable, removed from the bundle, or the task unknown to it)."""
    if task.finished:
        await settle(state, mj, task)  # a refund claimed by no one yet (a worker died)
        return task
    provider = state.store.current.providers.get(task.provider)
    if provider is None:
        return task
    try:
        status, data = await call_upstream(
            state, provider, "GET", wire.task_path(task.upstream_id, "fetch", mode)
        )
    except (AttemptFailed, GatewayError) as exc:
        log.warning("cannot refresh task %s from %s: %s", task.id, task.provider, exc)
        return task
    seen = wire.decode_state(data) if status == 200 else None
    if seen is None or seen.status is None:
        return task
    finished = seen.status in wire.FINISHED
    if await mj.store.update(task.id, seen.status, data, finished, time.time()):
        task = replace(task, status=seen.status, doc=data, finished=finished)
    else:  # another worker recorded the end first
        task = await mj.store.get(task.id) or task
    await settle(state, mj, task)
    return task


async def settle(state: WorkerState, mj: MjRuntime, task: TaskRow) -> None:
    """Refund a failed or cancelled task's charge, once."""
    if task.status not in REFUNDED or task.refunded:
        return
    if not await mj.store.claim_refund(task.id) or task.cost is None:
        return
    now = datetime.now(UTC)
    state.recorder.record(
        UsageRecord(
            request_id=f"{task.request_id}-refund",
            started_at=now,
            finished_at=now,
            key_id=task.key_id,
            group=task.group,
            tags=list(task.tags),
            endpoint=task.endpoint,
            requested_model=task.requested_model,
            served_model=task.model,
            provider=task.provider,
            status=200,
            error_type="mj_refund",
            cost_usd=-task.cost,
            usage_source="upstream",
            policy_revision=task.revision,
        )
    )


async def poll_once(state: WorkerState, mj: MjRuntime) -> int:
    """Refresh the unfinished tasks that are due; how many were."""
    due = await mj.store.claim_due(time.time(), mj.poll_s, MAX_POLL_AGE_S, POLL_BATCH)
    limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def one(task: TaskRow) -> None:
        async with limit:
            await refresh(state, mj, task)

    await asyncio.gather(*(one(task) for task in due))
    return len(due)


async def _poll_forever(state: WorkerState, mj: MjRuntime) -> None:
    while True:
        await asyncio.sleep(mj.poll_s)  # the polling cadence
        try:
            await poll_once(state, mj)
        except Exception:
            log.exception("polling Midjourney tasks failed")


async def start(state: WorkerState) -> MjRuntime:
    mj = runtime(state)
    await mj.store.open()
    mj.poller = asyncio.create_task(_poll_forever(state, mj), name="mj-poller")
    return mj


async def stop(state: WorkerState) -> None:
    mj = state.midjourney
    if mj is None:
        return
    if mj.poller is not None:
        mj.poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mj.poller
    await mj.store.close()
