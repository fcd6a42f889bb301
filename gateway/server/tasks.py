"""Each worker's task engine (gateway/tasks/) wired to the worker: usage rows go through its
recorder, refunds back to the budgets through its limiter. App.start registers every family's
adapter and starts the poller; a state built without App.start (tests) opens the engine on
first use, without a poller, and each family registers its adapter when first used."""

from __future__ import annotations

from ..tasks.adapter import TaskAdapter
from ..tasks.engine import TaskEngine
from ..tasks.store import TaskRow, TaskStore
from ..usage.record import UsageRecord
from .state import WorkerState

STORE_FILE = "tasks.sqlite"


class WorkerHooks:
    def __init__(self, state: WorkerState) -> None:
        self.state = state

    def record(self, row: UsageRecord) -> None:
        self.state.recorder.record(row)

    async def refund(self, task: TaskRow) -> None:
        snap = self.state.store.current
        key = snap.keys_by_id.get(task.key_id)
        if key is None or task.cost is None:  # a key removed from the bundle: the ledger row stands
            return
        await self.state.limiter.refund(snap, key, task.requested_model, task.cost)


def engine(state: WorkerState, adapter: TaskAdapter | None = None) -> TaskEngine:
    """The worker's engine, with `adapter` registered (a family's first use)."""
    tasks = state.tasks
    if tasks is None:
        store = TaskStore(state.settings.data_dir / STORE_FILE)
        tasks = state.tasks = TaskEngine(store, state.settings.mj_poll_s, WorkerHooks(state))
    if adapter is not None and adapter.family not in tasks.adapters:
        tasks.register(adapter)
    return tasks


async def start(state: WorkerState, adapters: list[TaskAdapter]) -> TaskEngine:
    tasks = engine(state)
    for adapter in adapters:
        tasks.register(adapter)
    return await tasks.start()


async def stop(state: WorkerState) -> None:
    if state.tasks is not None:
        await state.tasks.stop()
