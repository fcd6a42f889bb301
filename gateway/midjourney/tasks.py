"""Midjourney tasks, kept durably and shared by every worker process of the gateway.

stdlib sqlite3 in WAL mode in `<data_dir>/midjourney.sqlite`: several granian workers read and
write the same file (DuckDB allows one writer process). Each store runs its statements on one
thread of its own, off the event loop; a busy timeout covers the other workers' short write
locks. A task row remembers who submitted it (ownership), which upstream ran it (follow-up
actions go back there), what it was billed (refunds) and the last task document seen.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mj_task (
    id TEXT PRIMARY KEY,               -- the id clients see: the upstream's, or provider:upstream
    provider TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    group_id TEXT,
    model TEXT NOT NULL,               -- the upstream model (prices)
    requested_model TEXT NOT NULL,     -- what the key asked for (allow-lists)
    action TEXT NOT NULL,              -- the billed action, e.g. mj_imagine
    mode TEXT,
    endpoint TEXT NOT NULL,
    request_id TEXT NOT NULL,          -- the usage row of the submit
    cost TEXT,                         -- Decimal USD billed at submit; NULL when unpriced
    tags TEXT NOT NULL,                -- JSON list
    revision TEXT NOT NULL,
    status TEXT NOT NULL,
    doc BLOB NOT NULL,                 -- the last task document, under `id`
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_poll_at REAL NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    refunded INTEGER NOT NULL DEFAULT 0,
    UNIQUE (provider, upstream_id)
);
CREATE INDEX IF NOT EXISTS mj_task_by_key ON mj_task (key_id, submitted_at);
CREATE INDEX IF NOT EXISTS mj_task_due ON mj_task (finished, next_poll_at);
"""
_COLUMNS = (
    "id, provider, upstream_id, key_id, group_id, model, requested_model, action, mode, endpoint, "
    "request_id, cost, tags, revision, status, doc, submitted_at, finished, refunded"
)


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    provider: str
    upstream_id: str
    key_id: str
    group: str | None
    model: str
    requested_model: str
    action: str
    mode: str | None
    endpoint: str
    request_id: str
    cost: Decimal | None
    tags: tuple[str, ...]
    revision: str
    status: str
    doc: bytes
    submitted_at: float
    finished: bool = False
    refunded: bool = False


def _row(r: tuple[Any, ...]) -> TaskRow:
    return TaskRow(
        id=r[0], provider=r[1], upstream_id=r[2], key_id=r[3], group=r[4], model=r[5],
        requested_model=r[6], action=r[7], mode=r[8], endpoint=r[9], request_id=r[10],
        cost=Decimal(r[11]) if r[11] is not None else None, tags=tuple(json.loads(r[12])),
        revision=r[13], status=r[14], doc=bytes(r[15]), submitted_at=r[16],
        finished=bool(r[17]), refunded=bool(r[18]),
    )  # fmt: skip


class TaskStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mj-tasks")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> TaskStore:
        await self._run(self._connect)
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._connect()
        assert self._conn is not None
        return self._conn

    # writes ---------------------------------------------------------------------------------
    async def add(self, row: TaskRow, poll_at: float, rebill: bool = False) -> TaskRow:
        """Store a new task; the stored row comes back. Its id is the upstream's unless another
        upstream already used it (then `provider:upstream_id`). A task the upstream names again
        is not stored twice: the existing row comes back, and with `rebill` (a billed submit
        that continues it, like the modal after "Custom Zoom") it takes the new charge."""
        return await self._run(self._add, row, poll_at, rebill)

    def _add(self, row: TaskRow, poll_at: float, rebill: bool) -> TaskRow:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute(
                f"SELECT {_COLUMNS} FROM mj_task WHERE provider = ? AND upstream_id = ?",
                (row.provider, row.upstream_id),
            ).fetchone()
            if found is not None:
                existing = _row(found)
                if rebill and existing.key_id == row.key_id:
                    existing = self._rebill(existing, row, poll_at)
                db.execute("COMMIT")
                return existing
            task_id = row.id
            if db.execute("SELECT 1 FROM mj_task WHERE id = ?", (task_id,)).fetchone():
                task_id = f"{row.provider}:{row.upstream_id}"
            db.execute(
                f"INSERT INTO mj_task ({_COLUMNS}, updated_at, next_poll_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, row.provider, row.upstream_id, row.key_id, row.group, row.model,
                 row.requested_model, row.action, row.mode, row.endpoint, row.request_id,
                 str(row.cost) if row.cost is not None else None, json.dumps(list(row.tags)),
                 row.revision, row.status, row.doc, row.submitted_at, int(row.finished),
                 int(row.refunded), row.submitted_at, poll_at),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return replace(row, id=task_id)

    def _rebill(self, existing: TaskRow, row: TaskRow, poll_at: float) -> TaskRow:
        self._db.execute(
            "UPDATE mj_task SET action = ?, mode = ?, endpoint = ?, request_id = ?, cost = ?, tags = ?, "
            "revision = ?, status = ?, doc = ?, finished = 0, refunded = 0, updated_at = ?, "
            "next_poll_at = ? WHERE id = ?",
            (row.action, row.mode, row.endpoint, row.request_id,
             str(row.cost) if row.cost is not None else None, json.dumps(list(row.tags)),
             row.revision, row.status, row.doc, row.submitted_at, poll_at, existing.id),
        )  # fmt: skip
        return replace(
            row, id=existing.id, submitted_at=existing.submitted_at, requested_model=existing.requested_model
        )

    async def update(self, task_id: str, status: str, doc: bytes, finished: bool, now: float) -> bool:
        """Record a newer task document; a finished task is never changed again."""
        return await self._run(self._update, task_id, status, doc, finished, now)

    def _update(self, task_id: str, status: str, doc: bytes, finished: bool, now: float) -> bool:
        cur = self._db.execute(
            "UPDATE mj_task SET status = ?, doc = ?, finished = ?, updated_at = ? "
            "WHERE id = ? AND finished = 0",
            (status, doc, int(finished), now, task_id),
        )
        return cur.rowcount == 1

    async def claim_refund(self, task_id: str) -> bool:
        """True exactly once per failed or cancelled task, whichever worker asks first."""
        return await self._run(self._claim_refund, task_id)

    def _claim_refund(self, task_id: str) -> bool:
        cur = self._db.execute(
            "UPDATE mj_task SET refunded = 1 "
            "WHERE id = ? AND refunded = 0 AND status IN ('FAILURE', 'CANCEL')",
            (task_id,),
        )
        return cur.rowcount == 1

    async def claim_due(self, now: float, lease_s: float, max_age_s: float, limit: int) -> list[TaskRow]:
        """Unfinished tasks due for a refresh, leased to this worker for `lease_s` so that the
        other workers' pollers skip them."""
        return await self._run(self._claim_due, now, lease_s, max_age_s, limit)

    def _claim_due(self, now: float, lease_s: float, max_age_s: float, limit: int) -> list[TaskRow]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM mj_task WHERE finished = 0 AND next_poll_at <= ? "
                "AND submitted_at >= ? ORDER BY next_poll_at LIMIT ?",
                (now, now - max_age_s, limit),
            ).fetchall()
            db.executemany(
                "UPDATE mj_task SET next_poll_at = ? WHERE id = ?", [(now + lease_s, r[0]) for r in rows]
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [_row(r) for r in rows]

    # reads ----------------------------------------------------------------------------------
    async def get(self, task_id: str) -> TaskRow | None:
        return await self._run(self._get, task_id)

    def _get(self, task_id: str) -> TaskRow | None:
        found = self._db.execute(f"SELECT {_COLUMNS} FROM mj_task WHERE id = ?", (task_id,)).fetchone()
        return _row(found) if found is not None else None

    async def owned(self, key_id: str, ids: list[str] | None, limit: int = 100) -> list[TaskRow]:
        """The key's tasks among `ids` (in that order), or its latest `limit` tasks."""
        return await self._run(self._owned, key_id, ids, limit)

    def _owned(self, key_id: str, ids: list[str] | None, limit: int) -> list[TaskRow]:
        db = self._db
        if ids is None:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM mj_task WHERE key_id = ? ORDER BY submitted_at DESC LIMIT ?",
                (key_id, limit),
            ).fetchall()
            return [_row(r) for r in rows]
        wanted = list(dict.fromkeys(ids))[:limit]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM mj_task WHERE key_id = ? AND id IN ({marks})", (key_id, *wanted)
        ).fetchall()
        by_id = {r[0]: _row(r) for r in rows}
        return [by_id[i] for i in wanted if i in by_id]


class MjRuntime:
    """One worker's Midjourney state: the shared task store and its background poller."""

    def __init__(self, store: TaskStore, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self.poller: asyncio.Task[None] | None = None
