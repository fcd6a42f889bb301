"""Serve a fake upstream's aiohttp handler on 127.0.0.1 from its own thread and event loop, so
that synchronous tests (and SDK clients) can talk to it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ThreadedApp:
    def __init__(self, handler: Handler, *, port: int = 0, cancel_on_disconnect: bool = False) -> None:
        self.handler, self.port, self.cancel_on_disconnect = handler, port, cancel_on_disconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; returns the port (the one asked for, or a free one)."""
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(timeout):
            raise RuntimeError("fake server did not start")
        return self.port

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handler)
        # cancel_on_disconnect: a handler sees the client leave (to prove cancellation)
        self._runner = web.AppRunner(app, handler_cancellation=self.cancel_on_disconnect)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Poll `predicate` until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
