"""A lean HTTP/1.1 upstream client: asyncio protocols over pooled keep-alive connections, the
response parsed by httptools (llhttp, the parser behind uvicorn). The connection and the
response it reads are h1connection.py; this module pools connections per upstream host.

Measured on this machine: the aiohttp client costs ~115 µs of CPU per proxied request, while
granian answering a request costs ~40 µs; this client does the upstream side in a fraction of
aiohttp's cost by doing only what a relay needs (one request write, a C parser, body chunks
handed over as they arrive, the read / total timeouts checked by one sweep per event loop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl
import time
from urllib.parse import urlsplit

from ...config.types import Timeouts
from .base import UpstreamConnectError, UpstreamMaybeSent, UpstreamTimeout
from .h1connection import Connection, H1Response


class _Slots:
    """A counting semaphore with a synchronous fast path (`try_take`): asyncio's costs a
    coroutine per request even when a slot is free. Waiters are served first come, first served."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # resolved by `release`, which hands its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, but cancelled before using it: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class _HostPool:
    """Keep-alive connections to one upstream. A slot is held by each connection that has a
    request in flight; idle connections hold none."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, limit: int) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.idle: list[Connection] = []
        self.slots = _Slots(limit)

    def give_back(self, conn: Connection) -> None:
        self._end(conn)
        conn.reused = True
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        self._end(conn)

    def _end(self, conn: Connection) -> None:
        if conn.busy:
            conn.busy = False
            self.slots.release()

    def take_idle(self) -> Connection | None:
        """A usable idle connection when a slot is free at once, without a coroutine (the
        common case under load); None: `get` waits for a slot or connects."""
        if not self.idle or not self.slots.try_take():
            return None
        conn = self._pop_usable()
        if conn is None:
            self.slots.release()
        return conn

    def _pop_usable(self) -> Connection | None:
        """With a slot held: the newest idle connection still usable (the others closed)."""
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                conn.busy = True
                return conn
            conn.abort()
        return None

    async def get(self, connect_timeout: float) -> Connection:
        await self.slots.take()
        found = self._pop_usable()
        if found is not None:
            return found
        try:
            loop = asyncio.get_running_loop()
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                ),
                timeout=connect_timeout,
            )
        except BaseException as exc:
            self.slots.release()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from None
            if isinstance(exc, OSError):
                raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            raise
        conn.busy = True
        return conn


class H1Client:
    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._tls: ssl.SSLContext | None = None

    def _pool(self, scheme: str, host: str, port: int) -> _HostPool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            tls = None
            if scheme == "https":
                tls = self._tls = self._tls or ssl.create_default_context()
            pool = self._pools[key] = _HostPool(host, port, tls, self._pool_size)
        return pool

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeouts: Timeouts
    ) -> H1Response:
        scheme, host, port, target, netloc = _split(url)
        head = [f"{method} {target} HTTP/1.1\r\nhost: {netloc}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers.items()]
        head.append(f"content-length: {len(body or b'')}\r\n\r\n")
        wire = "".join(head).encode("latin-1") + (body or b"")
        pool = self._pool(scheme, host, port)
        # never one already known to be closed
        conn = pool.take_idle() or await pool.get(timeouts.connect)
        response = H1Response(conn, timeouts)
        conn.response = response
        assert conn.transport is not None
        conn.transport.write(wire)
        try:
            await response.wait_head()
        except UpstreamConnectError as exc:
            # Once written, the request may have been read and acted on: never resent here (the
            # relay decides, and counts it as an attempt).
            conn.abort()
            if conn.reused and not response.touched:
                raise UpstreamMaybeSent(f"{exc} (a reused keep-alive connection)") from None
            raise
        except BaseException:  # timeout, or the caller was cancelled: drop the request
            response.fail(UpstreamTimeout("abandoned"))
            conn.abort()
            raise
        return response

    async def aclose(self) -> None:
        for pool in self._pools.values():
            for conn in list(pool.idle):
                conn.abort()


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[str, str, int, str, str]:
    """scheme, host, port, request target, Host header: upstream URLs repeat, so parse each once."""
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, target or "/", parts.netloc
