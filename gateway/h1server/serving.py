"""What a worker's connections share: the application, the limits, the open connections, and
the sweep that enforces the header timeout (one timer per worker, not one per connection)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Member(Protocol):
    """What the worker's shared state needs of a connection (conn.py's H1Connection)."""

    def idle_since(self) -> float: ...

    def shut(self) -> None: ...

    def flush(self) -> None: ...

    def abort(self) -> None: ...


class Serving:
    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, *, max_connections: int,
                 max_header_bytes: int, header_timeout_s: float, keep_alive: bool) -> None:
        self.app = app
        self.loop = loop
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.keep_alive = keep_alive
        self.connections: set[Member] = set()
        self.draining = False
        self.active = 0  # requests being served (conn.py writes at once when it is the only one)
        self._writers: list[Member] = []

    def queue(self, conn: Member) -> None:
        """`conn` has bytes to write: all are written by one callback after this turn's work."""
        if not self._writers:
            self.loop.call_soon(self.flush)
        self._writers.append(conn)

    def flush(self) -> None:
        writers, self._writers = self._writers, []
        for conn in writers:
            conn.flush()

    async def sweep(self) -> None:
        """Close connections that have waited for a request head longer than the timeout: new
        ones that send nothing, idle keep-alive ones, slow trickles (hyper's header timer)."""
        every = min(1.0, self.header_timeout_s / 4)
        while True:
            await asyncio.sleep(every)
            late = self.loop.time() - self.header_timeout_s
            for conn in list(self.connections):
                since = conn.idle_since()
                if since and since <= late:
                    conn.shut()

    def shut_all(self) -> None:
        self.draining = True
        for conn in list(self.connections):
            conn.shut()
