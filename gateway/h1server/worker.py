"""One worker process of the HTTP server: the application started on a uvloop event loop,
serving the listening socket it inherited until SIGTERM or SIGINT, then a graceful stop: no new
connections, idle ones closed, requests in flight answered (up to the grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from typing import Any


def run_worker(sock: socket.socket, options: dict[str, Any]) -> None:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from ..server.app import app  # after the fork: the supervisor never loads the application

    loop.run_until_complete(app.start())
    try:
        loop.run_until_complete(_serve(loop, app, sock, options))
    finally:
        loop.run_until_complete(app.stop())
        loop.close()


async def _serve(loop: asyncio.AbstractEventLoop, app: Any, sock: socket.socket,
                 options: dict[str, Any]) -> None:
    from .conn import H1Connection
    from .serving import Serving

    serving = Serving(app, loop, max_connections=options["max_connections"],
                      max_header_bytes=options["max_header_bytes"],
                      header_timeout_s=options["header_timeout_s"], keep_alive=options["keep_alive"])
    server = await loop.create_server(lambda: H1Connection(serving), sock=sock,  # type: ignore[arg-type,return-value]
                                      backlog=options["backlog"])
    sweep = loop.create_task(serving.sweep())
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stopper(stop))
    await stop
    server.close()  # no new connections (the socket stays open for the other workers)
    serving.shut_all()
    deadline = loop.time() + options["grace_s"]
    while serving.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(serving.connections):
        conn.abort()
    sweep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweep


def _stopper(stop: asyncio.Future[None]) -> Any:
    def handler() -> None:
        if not stop.done():
            stop.set_result(None)

    return handler
