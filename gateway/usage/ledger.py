"""The per-worker ledger facade the server uses: `record()` on the request path (a spool append,
no DuckDB), `query()` for /admin/usage/query, `spend_since()` and `spend` (a SpendTracker) for
budgets, and a background task that closes spool segments and takes over ingest ownership when
it is free (the first process to take `<data_dir>/ingest.lock` owns the DuckDB file)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, UpstreamError
from .client import LedgerUnavailable, acall
from .lock import try_lock
from .parquet import SinkChoice
from .record import UsageRecord
from .spend import SpendTracker
from .spool import SpoolWriter

if TYPE_CHECKING:
    from .owner import Owner

log = logging.getLogger("tollgate.usage")


class Ledger:
    def __init__(
        self,
        data_dir: Path,
        retention_days: Callable[[], int | None] = lambda: None,
        interval_s: float = 0.5,
        parquet: SinkChoice = "env",
    ) -> None:
        self.data_dir = data_dir
        self._parquet = parquet  # used if this process becomes the owner
        self.spool = SpoolWriter(data_dir / "spool", rotate_s=interval_s)
        self.spend = SpendTracker(self)
        self.owner: Owner | None = None  # set when this process owns the ledger
        self._retention_days = retention_days
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._cut = asyncio.Lock()  # held during spend_since: the current segment stays open

    def record(self, row: UsageRecord) -> None:
        """On the request path: one write to this process's spool segment (a few µs)."""
        self.spool.append(row)
        self.spend.add(row)

    async def start(self) -> None:
        await self._try_own()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _try_own(self) -> None:
        if self.owner is not None:
            return
        fd = try_lock(self.data_dir)
        if fd is None:
            return
        from .owner import Owner  # DuckDB is loaded only by the process that owns the ledger

        owner = Owner(self.data_dir, fd, self._retention_days, self._parquet)
        try:
            await owner.start()
        except Exception:
            log.exception("could not open the usage ledger; another process will retry")
            await owner.close()
            return
        self.owner = owner

    async def _run(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self._interval)
            tick += 1
            try:
                if not self._cut.locked():
                    self.spool.rotate()
                if self.owner is not None:
                    await self.owner.ingest_due()
                elif tick % 4 == 0:  # the owner may have died: its lock is free again
                    await self._try_own()
            except Exception:
                log.exception("usage ledger background step failed")

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Ask the owner; if nobody answers and the lock is free, become the owner and retry."""
        try:
            return await acall(self.data_dir, request)
        except LedgerUnavailable:
            if self.owner is not None or not await self._took_over():
                raise
            return await acall(self.data_dir, request)

    async def _took_over(self) -> bool:
        """Whether this process owns the ledger after trying to (a function of its own: mypy, and
        mypyc's compiled checks, would keep `self.owner` narrowed to None across the await)."""
        await self._try_own()
        return self.owner is not None

    async def query(self, sql: str) -> dict[str, Any]:
        """For `POST /admin/usage/query`, from any worker: {"columns", "rows", "truncated"}.
        Raises InvalidRequest (400) for a bad or writing query, UpstreamError (503) when no
        process can serve the ledger."""
        if not self._cut.locked():
            self.spool.rotate(force=True)  # this worker's latest rows become visible
        try:
            answer = await self._ask({"op": "query", "sql": sql})
        except LedgerUnavailable as exc:
            raise UpstreamError(
                f"usage ledger unavailable: {exc}", status=503, code="ledger_unavailable"
            ) from None
        if "error" in answer:
            raise InvalidRequest(f"usage query failed: {answer['error']}", param="sql")
        return answer

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request of the owner's protocol (owner.py), with this worker's latest rows loaded
        first (credits_client.py uses it: a balance counts every request recorded until now).
        Raises LedgerUnavailable."""
        if not self._cut.locked():
            self.spool.rotate(force=True)
        return await self._ask(request)

    async def spend_since(
        self, kind: str, ident: str, since: dt.datetime, on_cut: Callable[[], None] | None = None
    ) -> Decimal:
        """USD spent by a key or group since `since`, over exactly the rows recorded before
        `on_cut()` runs: this worker's segment is closed at that instant and the next one stays
        open until the answer arrives (one such call at a time). Raises LedgerUnavailable."""
        async with self._cut:
            self.spool.rotate(force=True)
            if on_cut is not None:
                on_cut()
            answer = await self._ask(
                {"op": "spend", "kind": kind, "ident": ident, "since": since.isoformat()}
            )
        if "error" in answer:
            raise LedgerUnavailable(str(answer["error"]))
        return Decimal(str(answer["spend"]))

    async def close(self) -> None:
        """Stop the background task, close the spool segment, and as the owner load what is
        left and release the DuckDB file (another process may then take it over)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.spool.close()
        if self.owner is not None:
            await self.owner.close()
            self.owner = None
