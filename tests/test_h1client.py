"""The h1 upstream client against a real loopback server: keep-alive reuse, chunked streams as
they arrive, a stale pooled connection, timeouts, refused connections, cancellation."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from aiohttp import web

from gateway.config.types import Timeouts
from gateway.providers.transport.base import UpstreamConnectError, UpstreamTimeout
from gateway.providers.transport.h1client import H1Client

FAST = Timeouts(connect=2, read=2, total=10)


class Server:
    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.closed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.requests = 0
        self.transports: list[asyncio.BaseTransport] = []

    async def close_idle(self) -> None:
        """Close the server side of every connection a request came on (a keep-alive timeout)."""
        for transport in self.transports:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)  # the FIN goes out now, whatever the loop does

    async def reset(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()
        return web.Response()

    async def start(self) -> Server:
        app = web.Application()
        app.router.add_post("/json", self.json)
        app.router.add_post("/stream", self.stream)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/hang", self.hang)
        app.router.add_post("/reset", self.reset)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def json(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.requests += 1
        self.transports.append(request.transport)
        self.peers.add(request.transport.get_extra_info("peername"))
        body = await request.read()
        return web.json_response({"echo": body.decode(), "auth": request.headers.get("authorization")})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.05)
        return response

    async def slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await asyncio.sleep(5)
        return response

    async def hang(self, request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(60)
        finally:
            self.closed.set()
        return web.Response()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


async def with_server(test: object) -> None:
    server = await Server().start()
    client = H1Client(8)
    try:
        await test(server, client, f"http://127.0.0.1:{server.port}")  # type: ignore[operator]
    finally:
        await client.aclose()
        await server.stop()


def run(test: object) -> None:
    asyncio.run(with_server(test))


def test_json_and_keep_alive_reuse() -> None:
    async def test(server: Server, client: H1Client, url: str) -> None:
        for i in range(5):
            r = await client.send("POST", f"{url}/json", {"authorization": "Bearer k"}, f"b{i}".encode(), FAST)
            assert r.status == 200 and r.headers.get("Content-Type") == "application/json; charset=utf-8"
            assert await r.read() == f'{{"echo": "b{i}", "auth": "Bearer k"}}'.encode()
        assert len(server.peers) == 1  # one connection, reused

    run(test)


def test_stream_chunks_arrive_one_by_one() -> None:
    async def test(server: Server, client: H1Client, url: str) -> None:
        r = await client.send("POST", f"{url}/stream", {}, b"{}", FAST)
        chunks = [c async for c in r.chunks()]
        assert chunks == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]

    run(test)


def test_read_timeout_between_chunks() -> None:
    async def test(server: Server, client: H1Client, url: str) -> None:
        r = await client.send("POST", f"{url}/slow", {}, b"", Timeouts(connect=2, read=0.2, total=10))
        got = []
        with pytest.raises(UpstreamTimeout):
            async for c in r.chunks():
                got.append(c)
        assert got == [b"first"]

    run(test)


def test_stale_pooled_connection_is_replaced_before_writing() -> None:
    """The upstream closed an idle keep-alive connection (its FIN is in the socket, not yet seen
    by the event loop): the next request goes on a fresh connection, delivered exactly once."""
    async def test(server: Server, client: H1Client, url: str) -> None:
        r = await client.send("POST", f"{url}/json", {}, b"x", FAST)
        await r.read()
        pool = next(iter(client._pools.values()))
        assert len(pool.idle) == 1
        conn = pool.idle[0]
        conn.idle_since -= 60  # idle long enough to be probed before reuse
        await server.close_idle()
        time.sleep(0.2)  # blocking on purpose: the FIN arrives while the loop cannot see it
        assert not conn.closed
        r = await client.send("POST", f"{url}/json", {}, b"y", FAST)
        assert b'"echo": "y"' in await r.read()
        assert server.requests == 2  # never resent

    run(test)


def test_a_written_request_is_never_resent() -> None:
    """A reused connection reset after the upstream read the request: an error, not a resend."""
    async def test(server: Server, client: H1Client, url: str) -> None:
        await (await client.send("POST", f"{url}/json", {}, b"x", FAST)).read()
        with pytest.raises(UpstreamConnectError, match="reused"):
            await client.send("POST", f"{url}/reset", {}, b"y", FAST)
        assert server.requests == 2

    run(test)


def test_refused_and_cancelled() -> None:
    async def test(server: Server, client: H1Client, url: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        with pytest.raises(UpstreamConnectError):
            await client.send("POST", f"http://127.0.0.1:{closed_port}/x", {}, b"", FAST)
        task = asyncio.ensure_future(client.send("POST", f"{url}/hang", {}, b"", FAST))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 5)  # the upstream saw the connection go

    run(test)


def test_pool_slots_are_returned() -> None:
    async def test(server: Server, client: H1Client, url: str) -> None:
        async def one(i: int) -> bytes:
            r = await client.send("POST", f"{url}/json", {}, str(i).encode(), FAST)
            return await r.read()

        results = await asyncio.gather(*(one(i) for i in range(40)))  # 40 requests, 8 slots
        assert len(results) == 40
        pool = next(iter(client._pools.values()))
        assert pool.slots.free == 8 and not pool.slots.waiters and len(pool.idle) <= 8

    run(test)




def test_a_slot_waiter_cancelled_passes_its_slot_on() -> None:
    """A request waiting for a pool slot and cancelled (its client left) neither keeps a slot
    nor loses one: the others still get every slot."""
    async def test(server: Server, client: H1Client, url: str) -> None:
        async def one(i: int) -> bytes:
            r = await client.send("POST", f"{url}/json", {}, str(i).encode(), FAST)
            return await r.read()

        tasks = [asyncio.ensure_future(one(i)) for i in range(30)]  # 8 slots: most of them wait
        await asyncio.sleep(0)
        for task in tasks[10:20]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(d, bytes) for d in done) >= 20
        pool = next(iter(client._pools.values()))
        assert pool.slots.free == 8 and not pool.slots.waiters
        assert len(await asyncio.gather(*(one(i) for i in range(16)))) == 16

    run(test)
