"""Tasks of every family, kept durably and shared by every worker process of the gateway.

stdlib sqlite3 in WAL mode in `<data_dir>/tasks.sqlite`: several workers read and write
the same file (DuckDB allows one writer process, and the ledger owner is the only one). Each
store runs its statements on one thread of its own, off the event loop; a busy timeout covers
the other workers' short write locks. A task row remembers its family, who submitted it
(ownership), which upstream runs it (reads and follow-ups go back there), what it was charged
(refunds) and the last task document seen (in the family's client dialect).

A task is finished once, and a failed one is refunded once, whichever worker sees it first:
`update` only changes unfinished rows and `claim_refund` is an atomic compare-and-set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # imported on first use: a worker with no task never loads SQLite (~1 MB)
    import sqlite3

T = TypeVar("T")

# Statuses that end a task without a result, whatever its family: its charge is given back.
# (Midjourney and New API's task dialect: FAILURE / CANCEL; OpenAI's video object: failed.)
FAILED = frozenset({"FAILURE", "CANCEL", "failed"})
MAX_BACKOFF_S = 60.0  # the longest gap between two polls of one task (backoff grows with age)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS task (
    id TEXT PRIMARY KEY,               -- the id clients see: the upstream's, or provider:upstream
    family TEXT NOT NULL DEFAULT 'midjourney',  -- midjourney | video | suno
    provider TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    group_id TEXT,
    model TEXT NOT NULL,               -- the upstream model (prices)
    requested_model TEXT NOT NULL,     -- what the key asked for (allow-lists)
    action TEXT NOT NULL,              -- the billed action, e.g. mj_imagine, video, suno_music
    mode TEXT,
    endpoint TEXT NOT NULL,
    request_id TEXT NOT NULL,          -- the usage row of the submit
    cost TEXT,                         -- Decimal USD charged at submit; NULL when unpriced
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
CREATE INDEX IF NOT EXISTS task_by_key ON task (key_id, family, submitted_at);
CREATE INDEX IF NOT EXISTS task_due ON task (finished, next_poll_at);
"""
_COLUMNS = (
    "id, provider, upstream_id, key_id, group_id, model, requested_model, action, mode, endpoint, "
    "request_id, cost, tags, revision, status, doc, submitted_at, finished, refunded, family"
)
_LEGACY = "midjourney.sqlite"  # where Midjourney tasks lived before the engine (imported once)


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
    family: str = "midjourney"


def _row(r: tuple[Any, ...]) -> TaskRow:
    return TaskRow(
        id=r[0], provider=r[1], upstream_id=r[2], key_id=r[3], group=r[4], model=r[5],
        requested_model=r[6], action=r[7], mode=r[8], endpoint=r[9], request_id=r[10],
        cost=Decimal(r[11]) if r[11] is not None else None, tags=tuple(json.loads(r[12])),
        revision=r[13], status=r[14], doc=_bytes(r[15]), submitted_at=r[16],
        finished=bool(r[17]), refunded=bool(r[18]), family=r[19],
    )  # fmt: skip


def _bytes(doc: bytes | str) -> bytes:
    return doc.encode() if isinstance(doc, str) else bytes(doc)  # TEXT from a hand-made row


def _cost(cost: Decimal | None) -> str | None:
    return str(cost) if cost is not None else None


class TaskStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tasks")
        self._conn: sqlite3.Connection | None = None

    def present(self) -> bool:
        """Whether there is anything on disk to open (this store's file, or the legacy one)."""
        return self._conn is not None or self.path.exists() or self.path.with_name(_LEGACY).exists()

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
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn
        self._import_legacy(conn)

    def _import_legacy(self, conn: sqlite3.Connection) -> None:
        """Midjourney tasks of a gateway from before the engine (`midjourney.sqlite`, table
        `mj_task`) are copied over once, so their fetches and refunds keep working."""
        legacy = self.path.with_name(_LEGACY)
        if legacy == self.path or not legacy.exists():
            return
        if conn.execute("SELECT 1 FROM task LIMIT 1").fetchone() is not None:
            return
        conn.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))
        try:
            if conn.execute("SELECT 1 FROM legacy.sqlite_master WHERE name = 'mj_task'").fetchone():
                cols = _COLUMNS.removesuffix(", family") + ", updated_at, next_poll_at"
                conn.execute(f"INSERT OR IGNORE INTO task ({cols}) SELECT {cols} FROM legacy.mj_task")
        finally:
            conn.execute("DETACH DATABASE legacy")

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
        is not stored twice: the existing row comes back (check its `request_id` to know whether
        this submit is the one that stored it), and with `rebill` (a billed submit that
        continues it, like Midjourney's modal after "Custom Zoom") it takes the new charge."""
        return await self._run(self._add, row, poll_at, rebill)

    def _add(self, row: TaskRow, poll_at: float, rebill: bool) -> TaskRow:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute(
                f"SELECT {_COLUMNS} FROM task WHERE provider = ? AND upstream_id = ?",
                (row.provider, row.upstream_id),
            ).fetchone()
            if found is not None:
                existing = _row(found)
                if rebill and existing.key_id == row.key_id:
                    existing = self._rebill(existing, row, poll_at)
                db.execute("COMMIT")
                return existing
            task_id = row.id
            if db.execute("SELECT 1 FROM task WHERE id = ?", (task_id,)).fetchone():
                task_id = f"{row.provider}:{row.upstream_id}"
            db.execute(
                f"INSERT INTO task ({_COLUMNS}, updated_at, next_poll_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, row.provider, row.upstream_id, row.key_id, row.group, row.model,
                 row.requested_model, row.action, row.mode, row.endpoint, row.request_id,
                 _cost(row.cost), json.dumps(list(row.tags)), row.revision, row.status, row.doc,
                 row.submitted_at, int(row.finished), int(row.refunded), row.family,
                 row.submitted_at, poll_at),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return replace(row, id=task_id)

    def _rebill(self, existing: TaskRow, row: TaskRow, poll_at: float) -> TaskRow:
        self._db.execute(
            "UPDATE task SET action = ?, mode = ?, endpoint = ?, request_id = ?, cost = ?, tags = ?, "
            "revision = ?, status = ?, doc = ?, finished = 0, refunded = 0, updated_at = ?, "
            "next_poll_at = ? WHERE id = ?",
            (row.action, row.mode, row.endpoint, row.request_id, _cost(row.cost),
             json.dumps(list(row.tags)), row.revision, row.status, row.doc, row.submitted_at,
             poll_at, existing.id),
        )  # fmt: skip
        return replace(
            row, id=existing.id, submitted_at=existing.submitted_at, requested_model=existing.requested_model
        )

    async def update(self, task_id: str, status: str, doc: bytes, finished: bool, now: float) -> bool:
        """Record a newer task document; a finished task is never changed again. True when
        this call changed the row (so exactly one caller sees a task become finished)."""
        return await self._run(self._update, task_id, status, doc, finished, now)

    def _update(self, task_id: str, status: str, doc: bytes, finished: bool, now: float) -> bool:
        cur = self._db.execute(
            "UPDATE task SET status = ?, doc = ?, finished = ?, updated_at = ? WHERE id = ? AND finished = 0",
            (status, doc, int(finished), now, task_id),
        )
        return cur.rowcount == 1

    async def claim_refund(self, task_id: str) -> bool:
        """True exactly once per failed or cancelled task, whichever worker asks first."""
        return await self._run(self._claim_refund, task_id)

    def _claim_refund(self, task_id: str) -> bool:
        marks = ",".join("?" * len(FAILED))
        cur = self._db.execute(
            f"UPDATE task SET refunded = 1 WHERE id = ? AND refunded = 0 AND status IN ({marks})",
            (task_id, *sorted(FAILED)),
        )
        return cur.rowcount == 1

    async def remove(self, task_id: str, key_id: str) -> bool:
        """Forget a finished task of this key (a deleted video); False when there is none."""
        return await self._run(self._remove, task_id, key_id)

    def _remove(self, task_id: str, key_id: str) -> bool:
        cur = self._db.execute("DELETE FROM task WHERE id = ? AND key_id = ?", (task_id, key_id))
        return cur.rowcount == 1

    async def claim_due(self, now: float, lease_s: float, max_age_s: float, limit: int) -> list[TaskRow]:
        """Unfinished tasks due for a refresh, leased to this worker so that the other workers'
        pollers skip them. The lease is the next poll: `lease_s`, longer for older tasks (a
        tenth of their age, at most MAX_BACKOFF_S): a video that takes minutes is not polled
        every few seconds."""
        return await self._run(self._claim_due, now, lease_s, max_age_s, limit)

    def _claim_due(self, now: float, lease_s: float, max_age_s: float, limit: int) -> list[TaskRow]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM task WHERE finished = 0 AND next_poll_at <= ? "
                "AND submitted_at >= ? ORDER BY next_poll_at LIMIT ?",
                (now, now - max_age_s, limit),
            ).fetchall()
            db.executemany(
                "UPDATE task SET next_poll_at = ? + max(?, min(?, (? - submitted_at) / 10.0)) WHERE id = ?",
                [(now, lease_s, MAX_BACKOFF_S, now, r[0]) for r in rows],
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
        found = self._db.execute(f"SELECT {_COLUMNS} FROM task WHERE id = ?", (task_id,)).fetchone()
        return _row(found) if found is not None else None

    async def owned(
        self, key_id: str, ids: list[str] | None, limit: int = 100, family: str | None = None
    ) -> list[TaskRow]:
        """The key's tasks (of `family`, when given) among `ids` (in that order), or its latest
        `limit` tasks."""
        return await self._run(self._owned, key_id, ids, limit, family)

    def _owned(self, key_id: str, ids: list[str] | None, limit: int, family: str | None) -> list[TaskRow]:
        db = self._db
        fam = "" if family is None else " AND family = ?"
        fam_args: tuple[str, ...] = () if family is None else (family,)
        if ids is None:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM task WHERE key_id = ?{fam} ORDER BY submitted_at DESC LIMIT ?",
                (key_id, *fam_args, limit),
            ).fetchall()
            return [_row(r) for r in rows]
        wanted = list(dict.fromkeys(ids))[:limit]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM task WHERE key_id = ?{fam} AND id IN ({marks})",
            (key_id, *fam_args, *wanted),
        ).fetchall()
        by_id = {r[0]: _row(r) for r in rows}
        return [by_id[i] for i in wanted if i in by_id]

    async def page(
        self, key_id: str, family: str, after: str | None, limit: int, ascending: bool
    ) -> list[TaskRow]:
        """One page of the key's tasks of `family` by submit time, after the task `after`
        (a cursor; an unknown or foreign one starts from the beginning)."""
        return await self._run(self._page, key_id, family, after, limit, ascending)

    def _page(
        self, key_id: str, family: str, after: str | None, limit: int, ascending: bool
    ) -> list[TaskRow]:
        db = self._db
        order, cmp = ("ASC", ">") if ascending else ("DESC", "<")
        where, args = "key_id = ? AND family = ?", [key_id, family]
        if after is not None:
            cursor = db.execute(
                "SELECT submitted_at, id FROM task WHERE id = ? AND key_id = ? AND family = ?",
                (after, key_id, family),
            ).fetchone()
            if cursor is not None:
                where += f" AND (submitted_at, id) {cmp} (?, ?)"
                args += [cursor[0], cursor[1]]
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM task WHERE {where} ORDER BY submitted_at {order}, id {order} LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_row(r) for r in rows]
