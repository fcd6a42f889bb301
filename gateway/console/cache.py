"""A page's figures, kept a few seconds per worker: an open tab refreshing every 2 s (or a few
operators on one page) reuses one computation instead of rescanning the ledger each time. On a
10M-row ledger an overview costs the ledger owner ~1 s of both cores of a small box; computed
every 2 s it halved the relay's throughput (benchmarks/bench_console.py), once per TTL it does not."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

TTL_S = 10.0
MAX_ENTRIES = 64

Context = dict[str, Any]


class PageCache:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, ...], tuple[float, Context]] = OrderedDict()
        self._pending: dict[tuple[str, ...], asyncio.Future[Context]] = {}

    async def get(self, key: tuple[str, ...], compute: Callable[[], Awaitable[Context]]) -> Context:
        """The cached context for `key` (who asks, which page, which filter), or a fresh one;
        views arriving while it is computed wait for that one computation."""
        found = self._entries.get(key)
        if found is not None and time.monotonic() - found[0] < self.ttl_s:
            return found[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Context] = asyncio.ensure_future(compute())
        self._pending[key] = future
        try:
            context = await asyncio.shield(future)
        finally:
            current = self._pending.get(key)
            if current is future:
                del self._pending[key]
        if current is not future:  # dropped while computing (a redemption): not kept, maybe stale
            return context
        # timed from the end: a computation slower than the TTL (a loaded box) is still reused
        self._entries[key] = (time.monotonic(), context)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return context

    def drop(self, page: str, subject: str) -> None:
        """Forget `page`'s figures for `subject` (every filter, every revision), including one being
        computed: a key's view after it redeemed a code shows the new balance at once."""
        for key in [k for k in (*self._entries, *self._pending) if k[:2] == (page, subject)]:
            self._entries.pop(key, None)
            self._pending.pop(key, None)
