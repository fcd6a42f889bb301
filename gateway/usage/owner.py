"""Ledger ownership: exactly one process holds `<data_dir>/ingest.lock` (an flock, released by
the OS when that process dies). The holder owns the DuckDB file, ingests every process's spool
and answers queries for all of them on a Unix socket; the others retry the lock now and then.

Protocol on the socket: one JSON request line, one JSON answer line.
  {"op": "query", "sql": ...}  {"op": "export", "out": ..., "format": ..., "sql": ..., "params": [...]}
  {"op": "queries", "queries": [{"sql": ..., "params": [...]}, ...]}  (the console's fixed SQL)
  {"op": "spend", "kind": "key"|"group", "ident": ..., "since": ISO-8601}
  credit_add, credit_list, credit_total, codes_add, redeem: see credits_store.py (each write is
  committed and checkpointed before the answer)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .credits_store import OPS as CREDIT_OPS
from .lock import LEDGER_FILE, socket_path
from .parquet import ParquetSink, SinkChoice, resolve_sink
from .spool import ready_segments
from .turns import Turns

if TYPE_CHECKING:
    from .store import LedgerStore

log = logging.getLogger("tollgate.usage")
# The periodic ingest waits for a batch this large or this old: DuckDB's cost per row falls
# with the batch (measured, benchmarks/.work: ~12 µs/row at 2,000 rows, ~7 at 9,000), and at
# full load this owner shares a core with the workers. Queries still see every spooled row
# (`handle` ingests first), so only the file's background freshness waits.
INGEST_BATCH_BYTES = 4 << 20  # ~6,000 rows
INGEST_MAX_WAIT_S = 2.0
# The periodic ingest runs at nice 19 (turns.py); rows that have waited this long are ingested
# at the owner's own priority instead, so a saturated core still gets its ledger written.
TAKE_OVER_AFTER_S = 2 * INGEST_MAX_WAIT_S
# After a take-over the periodic ingest skips the background this long: the core is saturated,
# and a nice-19 thread starved in the middle of a batch holds the connection (and at times the
# GIL) until it gets the core to stop.
SATURATED_HOLD_S = 10.0
RETENTION_EVERY_S = 3600.0
OPS = frozenset({"query", "export", "queries", "spend", *CREDIT_OPS})


class Owner:
    """The lock holder's work: DuckDB, the ingest loop, the query server. DuckDB is used by one
    thread at a time (turns.py): the foreground (queries, credits, and the ingest they do first),
    the background's periodic ingest at nice 19, or the overdue thread. The writer and the read-only instance
    that runs admin SQL take turns with the file (see readonly_query.py), so they never hold it
    at the same time.

    DuckDB is imported and the file opened on first need: the first spool segment to ingest or
    the first request on the socket that reads the ledger (or at start with a Parquet sink, to
    export what a crashed owner left queued). A connection that asks nothing (the serve
    command's readiness probe), an unknown op and a spend query on a ledger with no file and
    nothing spooled are answered without it. An owner with nothing to do holds the lock and the
    socket only (~65 MB of RSS less, and a faster start, measured with benchmarks.bench_memory).
    Retention runs when the file is opened, then hourly."""

    def __init__(
        self,
        data_dir: Path,
        lock_fd: int,
        retention_days: Callable[[], int | None],
        parquet: SinkChoice = "env",
    ) -> None:
        """`parquet`: where to also write usage as Parquet; "env": as the process settings say."""
        self.data_dir = data_dir
        self._parquet = parquet
        self.spool_dir = data_dir / "spool"
        self._lock_fd = lock_fd
        self._retention_days = retention_days
        self._turns = Turns(self._preempt)
        self._opening = asyncio.Lock()
        self.store: LedgerStore | None = None
        self._sink: ParquetSink | None = None
        self._server: asyncio.AbstractServer | None = None
        self._listener: socket.socket | None = None
        self._last_retention = 0.0
        self._active = 0  # socket requests being answered
        self._saturated_until = 0.0  # monotonic: the periodic ingest skips the background until then
        self.last_work = time.monotonic()  # last ingested row or answered request

    async def start(self, listen_fd: int | None = None) -> None:
        """`listen_fd`: the socket this process inherited from itself before an idle release."""
        self._sink = resolve_sink(self._parquet)
        if self._sink is not None:  # its outbox may hold rows a crashed owner did not export
            await self._open()
        await self.ingest()
        self._listener = _listener(self.data_dir) if listen_fd is None else socket.socket(fileno=listen_fd)
        self._server = await asyncio.start_unix_server(self._serve, sock=self._listener, limit=1 << 24)
        if listen_fd is not None:
            return
        log.info("usage ledger owned by pid %d (%s)", os.getpid(), self.data_dir / LEDGER_FILE)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._turns.foreground(fn, *args)

    def _preempt(self) -> None:
        if self.store is not None:
            self.store.preempt()

    async def _open(self) -> LedgerStore:
        async with self._opening:  # two first requests at once opened it twice ("already attached")
            if self.store is None:
                from .store import LedgerStore  # DuckDB: loaded here, on first need

                self.store = await self._call(LedgerStore, self.data_dir / LEDGER_FILE, 60.0, self._sink)
        return self.store

    async def ingest(self, overdue: bool = False) -> int:
        """Every ready segment, on the foreground thread (`overdue`: on the overdue one)."""
        if self.store is None and not await self._call(ready_segments, self.spool_dir):
            return 0  # nothing to load: DuckDB stays unloaded
        store = await self._open()
        added = await self._ingest(store, overdue)
        if added:
            self.last_work = time.monotonic()
        return added

    async def ingest_due(self) -> int:
        """The periodic ingest: only when the ready segments hold `INGEST_BATCH_BYTES` or the
        oldest has waited `INGEST_MAX_WAIT_S` (a light load still lands within that). It runs on
        the background thread; rows that have waited `TAKE_OVER_AFTER_S`, and every batch for
        `SATURATED_HOLD_S` after that, go to the overdue thread; the hourly retention to the
        foreground (turns.py)."""
        size, waited = _ready_batch(self.spool_dir)
        if size < INGEST_BATCH_BYTES and (size == 0 or waited < INGEST_MAX_WAIT_S):
            return 0
        store = self.store
        if store is None or self._retention_due():
            return await self.ingest()
        if waited >= TAKE_OVER_AFTER_S:  # the last round did not keep up
            self._saturated_until = time.monotonic() + SATURATED_HOLD_S
        if time.monotonic() < self._saturated_until:
            return await self.ingest(overdue=True)
        job = self._turns.background(lambda: self._ingest_background(store))
        with contextlib.suppress(TimeoutError):
            added = await asyncio.wait_for(asyncio.shield(job), TAKE_OVER_AFTER_S - waited)
            if added is not None:
                if added:
                    self.last_work = time.monotonic()
                return added
        self._saturated_until = time.monotonic() + SATURATED_HOLD_S
        return await self.ingest(overdue=True)  # preempts the background batch if it still runs

    def _ingest_background(self, store: LedgerStore) -> int:
        try:
            return store.ingest(ready_segments(self.spool_dir), background=True)
        except Exception:  # its segments stay in the spool for the foreground
            log.exception("background usage ingest failed")
            return 0

    def _retention_due(self) -> bool:
        return time.time() - self._last_retention > RETENTION_EVERY_S

    async def _ingest(self, store: LedgerStore, overdue: bool) -> int:

        def work() -> int:
            added = store.ingest(ready_segments(self.spool_dir))
            if not overdue and self._retention_due():  # retention: at start, then hourly
                self._last_retention = time.time()
                store.apply_retention(self._retention_days())
            return added

        return int(await (self._turns.overdue(work) if overdue else self._call(work)))

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op not in OPS:  # answered without loading DuckDB
            return {"error": f"unknown op {op!r}"}
        if op == "spend" and self.store is None and await self._call(self._empty):
            # a new ledger (zero as its DECIMAL(38, 9) sum reads): budgets seed without DuckDB
            return {"spend": "0E-9"}
        from .store import dispatch

        store = await self._open()
        await self.ingest()  # read-your-writes: rows spooled until now are visible
        return dict(await self._call(dispatch, store, request))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._active += 1
        try:
            await self._answer(reader, writer)
        finally:
            self._active -= 1
            self.last_work = time.monotonic()

    def _empty(self) -> bool:
        """No ledger file and nothing spooled to ingest: every total is zero."""
        files = (self.data_dir / LEDGER_FILE, self.data_dir / (LEDGER_FILE + ".wal"))
        return not any(path.exists() for path in files) and not ready_segments(self.spool_dir)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:  # a connection that asks nothing (`tollgate serve` probing for the socket)
                writer.close()
                return
            request = msgspec.json.decode(line)
            answer = await self.handle(request if isinstance(request, dict) else {})
        except Exception as exc:  # a bad request must not take the server down
            log.exception("ledger request failed")
            answer = {"error": f"ledger error: {type(exc).__name__}: {exc}"}
        writer.write(msgspec.json.encode(answer) + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def idle_for(self) -> float:
        """Seconds since DuckDB last had work; 0 while it is not loaded or a request runs."""
        if self.store is None or self._active or self._sink is not None:
            return 0.0  # (a Parquet sink exports on a timer: it keeps DuckDB)
        return time.monotonic() - self.last_work

    async def release(self) -> tuple[int, int]:
        """Stop, keeping the lock and the listening socket for the next process image: the lock's
        and a duplicate of the socket's descriptors, both inheritable. Connections that arrive
        meanwhile wait in the socket's backlog."""
        assert self._listener is not None and self._server is not None
        listen_fd = os.dup(self._listener.fileno())
        self._server.close()
        await self._server.wait_closed()
        await self._unload()
        os.set_inheritable(listen_fd, True)
        os.set_inheritable(self._lock_fd, True)
        return self._lock_fd, listen_fd

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path(self.data_dir))
        await self._unload()
        os.close(self._lock_fd)  # releases the flock

    async def _unload(self) -> None:
        """A last ingest (a segment that fails stays in the spool for the next owner), then
        DuckDB closed and its thread ended: before a close, and before an idle release."""
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.ingest()
            await self._call(self.store.close)
        self._turns.shutdown()


def _ready_batch(spool_dir: Path) -> tuple[int, float]:
    """The ready segments' bytes and the seconds the oldest has waited (a few stat calls)."""
    size, now = 0, time.time()
    oldest = now
    for path in ready_segments(spool_dir):
        with contextlib.suppress(OSError):  # taken by another ingest meanwhile
            info = path.stat()
            size += info.st_size
            oldest = min(oldest, info.st_mtime)
    return size, now - oldest


def _listener(data_dir: Path) -> socket.socket:
    path = socket_path(data_dir)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)  # the ledger answers its own user only
    sock.listen(128)
    return sock
