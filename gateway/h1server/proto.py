"""A request's RSGI protocol on our HTTP/1.1 connection: the body in (whole or by chunks), one
answer out (whole, streamed, or a file), and `client_disconnect()`.

Errors are granian's own classes (the application catches those): `ProtocolClosed` when the
client is gone or the body ended early, `ProtocolError` for a body read twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError

from .head import render_head
from .scope import HttpScope

# Unread body bytes a connection buffers before it stops reading the socket (the application
# reads a body only once the key is known, and then with its own limit).
BODY_BUFFER = 256 * 1024
UNREAD, WHOLE, CHUNKS = 0, 1, 2  # how the body is being read


class Link(Protocol):
    """What a request needs of its connection (conn.py's H1Connection)."""

    loop: asyncio.AbstractEventLoop
    closed: bool
    write_paused: bool
    out_bytes: int

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def will_close(self, proto: HttpProto) -> bool: ...


class HttpProto:
    __slots__ = ("_buffered", "_chunks", "_conn", "_disconnect", "_mode", "_waiter", "complete",
                 "continue_sent", "expect", "failed", "keep_alive", "responded", "scope", "stream")

    def __init__(self, conn: Link, scope: HttpScope, keep_alive: bool, expect: bool) -> None:
        self._conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect = expect  # `Expect: 100-continue`: answered when the body is first read
        self.continue_sent = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._mode = UNREAD
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: asyncio.Future[None] | None = None
        self.complete = False  # the whole body arrived
        self.failed = False  # the connection ended (or the framing broke) before it did
        self.responded = False
        self.stream: ResponseStream | None = None

    # -- fed by the connection ---------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > BODY_BUFFER and self._mode != WHOLE:
            self._conn.pause_reading()
        self._wake()

    def end(self) -> None:
        self.complete = True
        self._wake()

    def fail(self) -> None:
        if not self.complete:
            self.failed = True
        self._wake()

    def lost(self) -> None:
        self.fail()
        if self._disconnect is not None and not self._disconnect.done():
            self._disconnect.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        if self.expect and not self.continue_sent:
            self.continue_sent = True
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        waiter = self._waiter = self._conn.loop.create_future()
        await waiter

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        if self._buffered > BODY_BUFFER:
            self._conn.resume_reading()
        self._buffered = 0
        return data

    # -- the body, as RSGI reads it ----------------------------------------------------------
    async def __call__(self) -> bytes:
        if self._mode != UNREAD:
            raise ProtocolError("the request body was already read")
        self._mode = WHOLE
        if self._buffered > BODY_BUFFER:  # paused before the whole body was asked for
            self._conn.resume_reading()
        while not self.complete:
            if self.failed:
                raise ProtocolClosed("the connection ended before the end of the request body")
            await self._wait()
        return self._take()

    def __aiter__(self) -> HttpProto:
        if self._mode != UNREAD:
            raise ProtocolError("the request body was already read")
        self._mode = CHUNKS
        return self

    async def __anext__(self) -> bytes:
        if self._mode == WHOLE:
            raise StopAsyncIteration
        while not self._chunks:
            if self.complete:
                raise StopAsyncIteration
            if self.failed:
                raise ProtocolClosed("the connection ended before the end of the request body")
            await self._wait()
        return self._take()

    def client_disconnect(self) -> Awaitable[None]:
        future = self._disconnect
        if future is None:
            future = self._disconnect = self._conn.loop.create_future()
            if self._conn.closed:
                future.set_result(None)
        return future

    # -- the answer --------------------------------------------------------------------------
    def _start(self, status: int, headers: list[tuple[str, str]], length: int | None,
               chunked: bool = True) -> bytes:
        if self.responded:
            raise ProtocolError("the response was already sent")
        self.responded = True
        close = self._conn.will_close(self)
        if close:
            self.keep_alive = False  # said in the head: closed after this answer whatever follows
        return render_head(status, headers, length, close, chunked,
                           not close and self.scope.http_version == "1.0")

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        head = self._start(status, headers, len(body))
        bodiless = not body or self.scope.method == "HEAD" or status < 200 or status in (204, 304)
        self._conn.write(head if bodiless else head + body)

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.response_bytes(status, headers, body.encode())

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.response_bytes(status, headers, b"")

    def response_file(self, status: int, headers: list[tuple[str, str]], file: str) -> None:
        with open(file, "rb") as f:  # the console's static assets: small files
            self.response_bytes(status, headers, f.read())

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> ResponseStream:
        chunked = self.scope.http_version != "1.0"  # HTTP/1.0: close-delimited
        if not chunked:
            self.keep_alive = False
        self._conn.write(self._start(status, headers, None, chunked))
        bodiless = self.scope.method == "HEAD" or status < 200 or status in (204, 304)
        self.stream = ResponseStream(self._conn, not bodiless, chunked)
        return self.stream


class ResponseStream:
    """A chunked answer; it ends when the application returns (the connection writes the end)."""

    __slots__ = ("_body", "_chunked", "_conn", "ended")

    def __init__(self, conn: Link, body: bool, chunked: bool = True) -> None:
        self._conn = conn
        self._body = body
        self._chunked = chunked
        self.ended = False

    async def send_bytes(self, data: bytes) -> None:
        conn = self._conn
        if conn.closed or self.ended:
            raise ProtocolClosed("the client is gone")
        if data and self._body:
            conn.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
            if conn.write_paused or conn.out_bytes > 256 * 1024:
                await conn.drain()

    async def send_str(self, data: str) -> None:
        await self.send_bytes(data.encode())

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            if self._body and self._chunked and not self._conn.closed:
                self._conn.write(b"0\r\n\r\n")

