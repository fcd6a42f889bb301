"""The task engine's units on a real SQLite file: polling backoff, the import of an older
gateway's Midjourney tasks, and settling (one end row, one refund, one budget give-back) when
several workers' engines see the same task end at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from gateway.tasks.adapter import Seen
from gateway.tasks.engine import TaskEngine
from gateway.tasks.store import TaskRow, TaskStore
from gateway.usage.record import UsageRecord


def _row(task_id: str, family: str = "video", cost: str | None = "0.80", age_s: float = 0.0) -> TaskRow:
    return TaskRow(
        id=task_id, provider="oa", upstream_id=task_id, key_id="alice", group=None, model="sora-2",
        requested_model="sora-2", action="video", mode=None, endpoint="videos", request_id=f"req_{task_id}",
        cost=Decimal(cost) if cost else None, tags=(), revision="rev", status="queued",
        doc=b'{"id": "%s"}' % task_id.encode(), submitted_at=time.time() - age_s, family=family,
    )  # fmt: skip


class Hooks:
    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []
        self.refunded: list[str] = []

    def record(self, row: UsageRecord) -> None:
        self.rows.append(row)

    async def refund(self, task: TaskRow) -> None:
        self.refunded.append(task.id)


class Upstream:
    family = "video"
    refund_type = "video_refund"

    def __init__(self, status: str) -> None:
        self.status, self.calls = status, 0

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        self.calls += 1
        await asyncio.sleep(0)
        return Seen(self.status, b'{"id": "%s", "status": "%s"}' % (task.id.encode(), self.status.encode()), True)


def test_older_tasks_are_polled_less_often(tmp_path: Path) -> None:
    async def run() -> None:
        store = await TaskStore(tmp_path / "tasks.sqlite").open()
        now = time.time()
        await store.add(_row("young"), now - 1)
        await store.add(_row("old", age_s=300), now - 1)
        assert {t.id for t in await store.claim_due(now, 1.0, 3600, 10)} == {"young", "old"}
        assert [t.id for t in await store.claim_due(now + 2, 1.0, 3600, 10)] == ["young"]  # every poll_s
        assert [t.id for t in await store.claim_due(now + 29, 1.0, 3600, 10)] == ["young"]  # old: a tenth of its age
        assert [t.id for t in await store.claim_due(now + 31, 1.0, 3600, 10)] == ["old"]  # young: 2.9 s now
        await store.close()

    asyncio.run(run())


def test_an_older_gateways_midjourney_tasks_are_imported_once(tmp_path: Path) -> None:
    legacy = sqlite3.connect(tmp_path / "midjourney.sqlite")
    legacy.executescript("""CREATE TABLE mj_task (id TEXT PRIMARY KEY, provider TEXT, upstream_id TEXT,
        key_id TEXT, group_id TEXT, model TEXT, requested_model TEXT, action TEXT, mode TEXT, endpoint TEXT,
        request_id TEXT, cost TEXT, tags TEXT, revision TEXT, status TEXT, doc BLOB, submitted_at REAL,
        updated_at REAL, next_poll_at REAL, finished INTEGER, refunded INTEGER)""")
    legacy.execute("INSERT INTO mj_task VALUES ('42', 'mj-a', '42', 'alice', NULL, 'midjourney', 'midjourney', "
                   "'mj_imagine', NULL, 'mj/submit/imagine', 'req_1', '0.05', '[]', 'rev', 'SUBMITTED', "
                   "'{\"id\": \"42\"}', 1.0, 1.0, 1.0, 0, 0)")
    legacy.commit()
    legacy.close()

    async def run() -> None:
        store = await TaskStore(tmp_path / "tasks.sqlite").open()
        task = await store.get("42")
        assert task is not None and task.family == "midjourney" and task.cost == Decimal("0.05")
        assert [t.id for t in await store.owned("alice", None, family="midjourney")] == ["42"]
        assert await store.owned("alice", None, family="video") == []
        await store.close()

    asyncio.run(run())


def _engines(tmp_path: Path, status: str, n: int = 3) -> tuple[list[TaskEngine], list[Hooks], list[Upstream]]:
    hooks = [Hooks() for _ in range(n)]
    ups = [Upstream(status) for _ in range(n)]
    engines = []
    for h, u in zip(hooks, ups, strict=True):
        engine = TaskEngine(TaskStore(tmp_path / "tasks.sqlite"), 0.1, h)
        engine.register(u)
        engines.append(engine)
    return engines, hooks, ups


def test_a_failed_task_seen_by_several_workers_is_refunded_and_ended_once(tmp_path: Path) -> None:
    async def run() -> None:
        engines, hooks, _ = _engines(tmp_path, "failed")
        for engine in engines:
            await engine.store.open()
        task = await engines[0].add(_row("v1"))
        seen = await asyncio.gather(*(e.refresh(task) for e in engines for _ in range(3)))
        assert all(t.status == "failed" and t.finished for t in seen)
        rows = [r for h in hooks for r in h.rows]
        assert sorted(r.request_id for r in rows) == ["req_v1-done", "req_v1-refund"]
        refund = next(r for r in rows if r.request_id.endswith("-refund"))
        assert (refund.cost_usd, refund.error_type, refund.task_id) == (Decimal("-0.80"), "video_refund", "v1")
        assert [i for h in hooks for i in h.refunded] == ["v1"]
        for engine in engines:
            await engine.stop()

    asyncio.run(run())


def test_a_finished_task_is_not_asked_again_and_success_is_not_refunded(tmp_path: Path) -> None:
    async def run() -> None:
        engines, hooks, ups = _engines(tmp_path, "completed", 1)
        await engines[0].store.open()
        task = await engines[0].add(_row("v2"))
        done = await engines[0].refresh(task)
        again = await engines[0].refresh(replace(done))
        assert again.status == "completed" and ups[0].calls == 1
        assert [(r.request_id, r.error_type, r.cost_usd) for r in hooks[0].rows] == [
            ("req_v2-done", "task_succeeded", Decimal(0))]
        assert await engines[0].poll_once() == 0  # nothing unfinished is due
        await engines[0].stop()

    asyncio.run(run())


def test_a_worker_with_no_task_opens_no_database_until_one_is_submitted(tmp_path: Path) -> None:
    """Started with nothing on disk, an engine creates no file and polls nothing; a task another
    worker submits later (same file) is then polled here too."""

    async def run() -> None:
        idle, busy = (TaskEngine(TaskStore(tmp_path / "tasks.sqlite"), 0.05, Hooks()) for _ in range(2))
        up = Upstream("completed")
        idle.register(up)
        busy.register(Upstream("completed"))
        await idle.start()
        assert await idle.poll_once() == 0
        assert not (tmp_path / "tasks.sqlite").exists() and idle.store._conn is None
        await busy.add(_row("v9", age_s=1))  # the other worker's first submit creates the file
        assert (tmp_path / "tasks.sqlite").exists()
        deadline = time.monotonic() + 10
        while up.calls == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert up.calls >= 1  # the idle engine's poller found it
        await idle.stop()
        await busy.stop()

    asyncio.run(run())
