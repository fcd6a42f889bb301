"""The native server's WebSockets (gateway/h1server/ws.py) over loopback sockets, on asyncio's loop
and on uvloop: a tiny HTTP/1.1 front (httptools up to the upgrade, as the server's connection does)
hands the connection to a `WsSession`, an app coroutine gets granian's RSGI interface, and the
`websockets` client library (or a raw socket, for what that library would not send) talks to it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import pytest
import uvloop
from granian._granian import RSGIProtocolClosed, RSGIProtocolError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from gateway.h1server import ws
from gateway.h1server.ws import WsProto, WsSession

MiB = 2**20
App = Callable[[Any, WsProto], Awaitable[None]]
HANDSHAKE = (b"GET /chat?x=1 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@dataclass
class Headers:
    pairs: list[tuple[str, str]]

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self.pairs if k == key), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


@dataclass
class Scope:
    method: str
    path: str
    query_string: str
    headers: Headers
    http_version: str = "1.1"
    proto: str = "ws"


@dataclass
class Front:
    """What the server side saw: the app's outcome, write-pause count, the session's end."""

    app: App
    outcome: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    paused: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    pauses: int = 0
    transport: asyncio.Transport | None = None


class Conn(asyncio.Protocol):
    """The request head by httptools until HttpParserUpgrade, then everything to the session."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.parser = httptools.HttpRequestParser(self)
        self.url, self.headers = b"", list[tuple[str, str]]()
        self.session: WsSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is not an asyncio.Transport subclass
        self.transport = self.front.transport = cast(asyncio.Transport, transport)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            path, _, query = self.url.decode().partition("?")
            scope = Scope(self.parser.get_method().decode(), path, query, Headers(self.headers))
            loop = asyncio.get_running_loop()
            self.session = WsSession(self.transport, scope, loop)
            if rest := data[int(exc.args[0]):]:
                self.session.feed(rest)
            self.task = loop.create_task(self.run(scope, self.session))

    async def run(self, scope: Scope, session: WsSession) -> None:
        try:
            result = await self.front.app(scope, session.proto)
        except Exception as exc:
            self.front.outcome.set_exception(exc)
        else:
            self.front.outcome.set_result(result)
        await session.finish()
        self.front.finished.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.gone.set()
        if self.session is not None:
            self.session.lost(exc)

    def pause_writing(self) -> None:
        self.front.pauses += 1
        self.front.paused.set()
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()


@contextlib.asynccontextmanager
async def serve(app: App) -> AsyncIterator[tuple[str, Front]]:
    front = Front(app)
    server = await asyncio.get_running_loop().create_server(lambda: Conn(front), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/chat?x=1", front
    finally:
        server.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Coroutine[Any, Any, Any]], Any]]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(main: Coroutine[Any, Any, Any]) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(20):  # a hang fails the test rather than the run
                return await main
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(bounded())
    yield run
    # What the loops left (transports, coroutines, the websockets client's objects) is collected
    # here, not by a collection that may fall inside a later test's ast.parse(): CPython 3.11
    # then raises "AST constructor recursion depth mismatch" (seen in test_import_layers.py).
    gc.collect()


async def echo(scope: Any, proto: WsProto) -> list[tuple[int, Any]]:
    assert (scope.proto, scope.path, scope.query_string) == ("ws", "/chat", "x=1")
    transport = await proto.accept()
    seen: list[tuple[int, Any]] = []
    while True:
        message = await transport.receive()
        seen.append((message.kind, message.data))
        if message.kind == 0:
            seen.append(((again := await transport.receive()).kind, again.data))  # stays closed
            return seen
        await (transport.send_str(message.data) if message.kind == 2 else transport.send_bytes(message.data))


async def raw_exchange(port_url: str, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = port_url.removeprefix("ws://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    return reader, writer


def test_echo_text_bytes_fragments_pings_and_client_close(run):
    async def main() -> None:
        async with serve(echo) as (url, front), connect(url, ping_interval=None) as client:
            await client.send("héllo")
            assert await client.recv() == "héllo"
            await client.send(b"\x00\x01\xff")
            assert await client.recv() == b"\x00\x01\xff"
            await client.send(["frag", "mént", "ed"])  # one message in three frames
            assert await client.recv() == "fragménted"
            await client.send([b"ab", b"", b"cd"])
            assert await client.recv() == b"abcd"
            pong = await client.ping(b"p1")
            await asyncio.wait_for(pong, 5)  # answered by the server's protocol, not the app
            await client.close()
            assert client.close_code == 1000
            assert await front.outcome == [(2, "héllo"), (1, b"\x00\x01\xff"), (2, "fragménted"),
                                           (1, b"abcd"), (0, None), (0, None)]
            await front.finished.wait()
    run(main())


@pytest.mark.parametrize(("refusal", "status"), [("close404", 404), ("close", 403),
                                                 ("return", 403), ("raise", 403)])
def test_refused_before_accept_is_a_bodyless_http_status(run, refusal, status):
    async def app(scope: Any, proto: WsProto) -> None:
        if refusal == "close404":
            proto.close(404)
        elif refusal == "close":
            assert proto.close() is None
        elif refusal == "raise":
            raise ValueError("app failed")
        # "return": neither accepted nor refused, the session's finish() answers as granian does

    async def main() -> None:
        async with serve(app) as (url, front):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            response = refused.value.response
            assert response.status_code == status
            assert response.headers["content-length"] == "0" and response.body == b""
            await front.finished.wait()
            await front.gone.wait()  # and the connection is closed
    run(main())


@pytest.mark.parametrize(("header", "status"), [(b"Sec-WebSocket-Version: 13\r\n", 400),
                                                (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                                 b"Sec-WebSocket-Version: 8\r\n", 400)])
def test_invalid_handshake_is_answered_400_and_accept_raises(run, header, status):
    async def app(scope: Any, proto: WsProto) -> None:
        await proto.accept()

    async def main() -> None:
        async with serve(app) as (url, front):
            reader, writer = await raw_exchange(url, b"GET /chat?x=1 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket"
                                                     b"\r\nConnection: Upgrade\r\n" + header + b"\r\n")
            answer = await reader.read()  # to the server's close
            writer.close()
            head = answer.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 %d " % status)
            assert b"\r\nsec-websocket-version: 13" in head
            with pytest.raises(RSGIProtocolError):
                await front.outcome
    run(main())


def test_accept_after_the_client_left_raises_protocol_error(run):
    fronts: list[Front] = []

    async def app(scope: Any, proto: WsProto) -> None:
        await fronts[0].gone.wait()
        await proto.accept()

    async def main() -> None:
        async with serve(app) as (url, front):
            fronts.append(front)
            _, writer = await raw_exchange(url, HANDSHAKE)
            writer.close()
            with pytest.raises(RSGIProtocolError):
                await front.outcome
            await front.finished.wait()
    run(main())


def test_frames_sent_with_the_head_reach_the_app(run):
    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        message = await transport.receive()
        await transport.send_str(f"got {message.data}")

    async def main() -> None:
        async with serve(app) as (url, front):
            early = Frame(Opcode.TEXT, b"early").serialize(mask=True, extensions=[])
            reader, writer = await raw_exchange(url, HANDSHAKE + early)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example
            assert await reader.readexactly(11) == b"\x81\x09got early"
            assert await reader.readexactly(4) == b"\x88\x02\x03\xe8"  # then close 1000
            writer.write(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True, extensions=[]))
            await front.finished.wait()
            assert await reader.read() == b""  # the server closed the connection
            writer.close()
            await front.outcome
    run(main())


@pytest.mark.parametrize("how", ["return", "close"])
def test_server_end_is_a_close_1000(run, how):
    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        await transport.send_str("bye")
        if how == "close":  # what the realtime endpoint does in its `finally`
            proto.close()

    async def main() -> None:
        async with serve(app) as (url, front), connect(url) as client:
            assert await client.recv() == "bye"
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            await front.finished.wait()
            await front.outcome
    run(main())


def test_finish_gives_up_on_a_silent_client(run, monkeypatch):
    monkeypatch.setattr(ws, "CLOSE_TIMEOUT", 0.2)

    async def app(scope: Any, proto: WsProto) -> None:
        await proto.accept()

    async def main() -> None:
        async with serve(app) as (url, front):
            reader, writer = await raw_exchange(url, HANDSHAKE)
            await reader.readuntil(b"\r\n\r\n")
            assert await reader.readexactly(4) == b"\x88\x02\x03\xe8"
            # never answered: the transport is closed after CLOSE_TIMEOUT
            await front.finished.wait()
            await front.gone.wait()
            writer.close()
    run(main())


def test_client_vanishing_ends_receive_and_send_raises_closed(run):
    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        with pytest.raises(RSGIProtocolClosed):  # granian: a loss without a close frame raises
            await transport.receive()
        with pytest.raises(RSGIProtocolClosed):
            await transport.send_str("anyone?")
        with pytest.raises(RSGIProtocolClosed):
            await transport.send_bytes(b"anyone?")
        assert issubclass(RSGIProtocolClosed, RuntimeError)

    async def main() -> None:
        async with serve(app) as (url, front):
            client = await connect(url)
            client.transport.abort()  # no close frame
            await front.outcome
            await front.finished.wait()
    run(main())


def test_large_messages_both_ways_under_flow_control(run):
    count = 12

    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        message = await transport.receive()
        assert message.kind == 1 and message.data == bytes(range(256)) * (MiB // 256)
        text = await transport.receive()
        assert text.kind == 2 and text.data == "é" * (MiB // 2)
        socket = fronts[0].transport
        assert socket is not None
        for i in range(count):  # the client reads none until the server had to wait
            await transport.send_bytes(bytes([i]) * MiB)
            # a send returns once the buffer is below its high-water mark: it did not just pile up
            assert socket.get_write_buffer_size() <= socket.get_write_buffer_limits()[1]
        await transport.send_str("é" * (MiB // 2))

    async def main() -> None:
        async with serve(app) as (url, front):
            fronts.append(front)
            async with connect(url, max_size=2 * MiB, max_queue=1) as client:
                await client.send(bytes(range(256)) * (MiB // 256))
                await client.send("é" * (MiB // 2))
                await front.paused.wait()
                for i in range(count):
                    assert await client.recv() == bytes([i]) * MiB
                assert await client.recv() == "é" * (MiB // 2)
                await front.outcome
                assert front.pauses >= 1
    fronts: list[Front] = []
    run(main())


def test_oversized_message_closes_1009(run):
    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        with pytest.raises(RSGIProtocolClosed):
            await transport.receive()

    async def main() -> None:
        async with serve(app) as (url, front), connect(url, max_size=None) as client:
            with contextlib.suppress(ConnectionClosed):  # the server may close while it is sent
                await client.send(b"x" * (ws.MAX_SIZE + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            await front.outcome
    run(main())


def test_invalid_utf8_text_closes_1007(run):
    async def app(scope: Any, proto: WsProto) -> None:
        transport = await proto.accept()
        with pytest.raises(RSGIProtocolClosed):
            await transport.receive()

    async def main() -> None:
        async with serve(app) as (url, front), connect(url) as client:
            await client.send(b"\xff\xfe", text=True)
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
            await front.outcome
    run(main())
