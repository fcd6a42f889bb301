"""Midjourney's adapter for the task engine (gateway/tasks/): a task refreshed from its
midjourney-proxy, in the proxy's own document. Polling, settling and refunds are the engine's.

Refunds: when a billed task is first seen in FAILURE or CANCEL (no image came of it), one usage
row with the negated cost is recorded (`request_id` = "<submit's request id>-refund",
`error_type` = "mj_refund"), once however many workers and fetches see the failure.
"""

from __future__ import annotations

import logging

from ...errors import GatewayError
from ...midjourney.tasks import MjRuntime, TaskRow
from ...providers.wire import midjourney as wire
from ...tasks.adapter import Seen
from ..attempts import AttemptFailed
from ..state import WorkerState
from ..tasks import engine
from .runtime import call_upstream

log = logging.getLogger("tollgate.midjourney")


def view(task: TaskRow) -> bytes:
    """The task document as its owner sees it (under the gateway's id for the task)."""
    return task.doc if task.id == task.upstream_id else wire.with_id(task.doc, task.id)


class MidjourneyTasks:
    family = "midjourney"
    refund_type = "mj_refund"

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        provider = self.state.store.current.providers.get(task.provider)
        if provider is None:
            return None
        try:
            status, data = await call_upstream(
                self.state, provider, "GET", wire.task_path(task.upstream_id, "fetch", hint)
            )
        except (AttemptFailed, GatewayError) as exc:
            log.warning("cannot refresh task %s from %s: %s", task.id, task.provider, exc)
            return None
        seen = wire.decode_state(data) if status == 200 else None
        if seen is None or seen.status is None:
            return None
        return Seen(seen.status, data, seen.status in wire.FINISHED)


def runtime(state: WorkerState) -> MjRuntime:
    """The worker's task engine, Midjourney's adapter registered on it."""
    return engine(
        state,
        MidjourneyTasks(state) if state.tasks is None or "midjourney" not in state.tasks.adapters else None,
    )


async def refresh(state: WorkerState, mj: MjRuntime, task: TaskRow, mode: str | None = None) -> TaskRow:
    """The task as its upstream reports it now; the stored one when the upstream cannot say
    (unreachable, removed from the bundle, or the task unknown to it)."""
    return await mj.refresh(task, mode)
