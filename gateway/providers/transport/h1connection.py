"""One pooled upstream connection of the HTTP/1.1 client (h1client.py) and the response read
from it: an asyncio protocol whose bytes httptools (llhttp) parses, body chunks handed to the
reader as they arrive, reading paused above a high-water mark; the read and total timeouts
checked by one sweep per event loop (core/sweep.py), not a timer per request.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, cast

import httptools

from ...config.types import Timeouts
from ...core.sweep import sweep_of
from .base import UpstreamConnectError, UpstreamTimeout

_HIGH_WATER = 1 << 20  # pause reading the upstream when this much body waits for the client
_PROBE_AFTER_IDLE_S = 0.5
SWEEP_S = 0.1  # an upstream timeout fires up to this much late (core/sweep.py)


def _peer_still_open(transport: asyncio.Transport) -> bool:
    """Peek at the socket without reading: EOF (the peer closed) or stray bytes make the
    connection unusable; "nothing to read yet" is the healthy answer."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return True
    probe = socket.socket(sock.family, sock.type, 0, fileno=sock.fileno())
    try:
        probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        probe.detach()  # the fd stays the transport's
    return False


class _Headers(dict[str, str]):
    """Lower-cased names; `get` is case-insensitive for the names callers use."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class Pool(Protocol):
    """Where a connection goes back when its response is complete (h1client's host pool)."""

    def give_back(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.loop = asyncio.get_running_loop()  # once per connection: the call costs a getpid()
        self.deadlines = sweep_of(self.loop, SWEEP_S)  # read and total timeouts
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self.closed = False
        self.reused = False
        self.busy = False  # holds one of the pool's slots while a request is in flight
        self.idle_since = 0.0

    def usable(self) -> bool:
        """Whether a pooled connection can take a request. A request once written is never
        resent (the upstream may have acted on it), so a connection the upstream closed while it
        sat idle must be found out before writing: after a while idle, a non-blocking peek
        tells (a server's keep-alive timeout is seconds; busy connections skip the syscall)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        if time.monotonic() - self.idle_since < _PROBE_AFTER_IDLE_S:
            return True
        return _peer_still_open(self.transport)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        response.touched = True
        response.last = response.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(UpstreamConnectError(f"bad HTTP from upstream: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.response is not None and not self.response.complete:
            self.response.fail(UpstreamConnectError("upstream closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.raw_headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()
        self.response.headed()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.push(body)

    def on_message_complete(self) -> None:
        response, self.response = self.response, None
        keep = self.parser.should_keep_alive()
        if response is not None:
            response.finish()
        if keep and not self.closed:
            self.pool.give_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()


class H1Response:
    """The protocol the relay reads: status, headers, read() / chunks(), aclose()."""

    def __init__(self, conn: Connection, timeouts: Timeouts) -> None:
        self.loop = conn.loop
        self.conn = conn
        self.status = 0
        self.raw_headers = _Headers()
        self.headers: Mapping[str, str] = self.raw_headers
        self.complete = False
        self.touched = False
        self.last = self.loop.time()
        self._end = self.last + timeouts.total
        self._read = timeouts.read
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head: asyncio.Future[None] = self.loop.create_future()
        self._deadlines = conn.deadlines
        self._deadlines.add(self)

    def check(self, now: float) -> None:
        """Called by the sweep: a response past its read or total timeout fails."""
        if now >= self._end or now - self.last >= self._read:
            self.fail(UpstreamTimeout("timed out waiting for the upstream"))
            self.conn.abort()

    def headed(self) -> None:
        if not self._head.done():
            self._head.set_result(None)

    def push(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and self.conn.transport is not None:
            self.conn.transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._deadlines.discard(self)
        self._wake()

    def fail(self, exc: Exception) -> None:
        if self.complete:
            return
        self._error = exc
        self._deadlines.discard(self)
        if not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_head(self) -> None:
        await self._head

    def chunks(self) -> AsyncIterator[bytes]:
        return _Chunks(self)

    async def read(self) -> bytes:
        """The whole body. Not through `chunks()`: an async generator per answer costs the loop's
        generator bookkeeping (a weak set entry, its finaliser), and a whole answer usually
        arrived with its head, so this returns without suspending."""
        parts: list[bytes] = []
        while True:
            if self._chunks:
                parts.extend(self._chunks)
                self._chunks.clear()
                if self._buffered > _HIGH_WATER and self.conn.transport is not None:
                    self.conn.transport.resume_reading()  # push() paused it
                self._buffered = 0
            elif self._error is not None:
                raise type(self._error)(*self._error.args)  # a fresh one: see chunks()
            elif self.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                self._waiter = self.loop.create_future()
                await self._waiter

    async def aclose(self) -> None:
        if not self.complete:  # unfinished: drop the connection, which cancels the upstream
            self._deadlines.discard(self)
            self.conn.abort()


class _Chunks:
    """A response body as it arrives: an iterator object rather than an async generator (no
    generator bookkeeping in the loop; and mypyc, which compiles this module, has none)."""

    __slots__ = ("_response",)

    def __init__(self, response: H1Response) -> None:
        self._response = response

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        r = self._response
        while True:
            if r._chunks:
                data = r._chunks.popleft()
                r._buffered -= len(data)
                if r._buffered < _HIGH_WATER // 2 and r.conn.transport is not None:
                    r.conn.transport.resume_reading()
                return data
            if r._error is not None:
                # a fresh exception each time: the stored one would keep the raising frames (and
                # the client's response stream they hold) alive in a reference cycle, and granian
                # ends a streamed response only when its transport object is freed
                raise type(r._error)(*r._error.args)
            if r.complete:
                raise StopAsyncIteration
            r._waiter = r.loop.create_future()
            await r._waiter
