"""The native HTTP/1.1 server (gateway/h1server: conn.py, proto.py, head.py, serving.py) over real
loopback sockets on uvloop: a tiny RSGI application served by `H1Connection` through `Serving`,
talked to by raw sockets (asyncio streams) and httpx. What the application sees (scope, body,
granian's errors) and what a client sees (framing, keep-alive, limits, closes) should be what
granian 2.8 showed (gateway/server/rsgi.py, gateway/server/intake.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from granian._granian import RSGIProtocolClosed, RSGIProtocolError

from gateway.h1server.conn import H1Connection
from gateway.h1server.proto import BODY_BUFFER
from gateway.h1server.serving import Serving

MiB = 2**20
Handler = Callable[[Any, Any], Awaitable[None]]
TIMEOUT_S = 0.3  # the header timeout of the tests that wait for it
RESET = b"<reset>"  # what `rest()` returns for a connection reset instead of closed


# -- the server under test ---------------------------------------------------------------------
class RsgiApp:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await self.handler(scope, proto)


@dataclass
class Server:
    serving: Serving
    port: int

    async def open(self, rcvbuf: int = 0) -> Client:
        """A client connection; `rcvbuf` a small kernel receive buffer (no autotuning to MBs)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return Client(reader, writer)

    def only(self) -> H1Connection:
        """The one open connection."""
        assert len(self.serving.connections) == 1, self.serving.connections
        return next(iter(self.serving.connections))


@contextlib.asynccontextmanager
async def serve(handler: Handler, *, max_connections: int = 64, max_header_bytes: int = 8192,
                header_timeout_s: float = 5.0, keep_alive: bool = True) -> AsyncIterator[Server]:
    loop = asyncio.get_running_loop()
    serving = Serving(RsgiApp(handler), loop, max_connections=max_connections,
                      max_header_bytes=max_header_bytes, header_timeout_s=header_timeout_s,
                      keep_alive=keep_alive)
    server = await loop.create_server(lambda: H1Connection(serving), "127.0.0.1", 0)  # type: ignore[arg-type,return-value]
    sweep = loop.create_task(serving.sweep())
    try:
        yield Server(serving, server.sockets[0].getsockname()[1])
    finally:
        sweep.cancel()
        server.close()
        for conn in list(serving.connections):
            if conn.transport is not None:
                conn.transport.abort()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep


def run(main: Coroutine[Any, Any, Any], limit: float = 10) -> Any:
    """On uvloop, as the workers serve; a hang fails the test rather than the run."""
    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            return await main
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll `check` (server-side state the tests cannot await) until it holds, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


# -- the client side ---------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    head: bytes
    body: bytes = b""
    chunks: list[bytes] | None = None  # the chunks of a chunked body, as framed

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.writer.get_extra_info("sockname")[1]

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, *, bodiless: bool = False) -> Response:
        return await read_response(self.reader, bodiless=bodiless)

    async def request(self, data: bytes, *, bodiless: bool = False) -> Response:
        self.send(data)
        return await self.response(bodiless=bodiless)

    async def rest(self) -> bytes:
        """Everything until the server closes the connection (RESET if it reset it)."""
        try:
            return await self.reader.read()
        except ConnectionResetError:
            return RESET

    def close(self) -> None:
        self.writer.close()


async def read_response(reader: asyncio.StreamReader, *, bodiless: bool = False) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, status, reason = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        assert sep and name == name.strip(), f"malformed header line {line!r}"
        headers.append((name.lower(), value.strip()))
    response = Response(int(status), reason, headers, head)
    if bodiless or response.status < 200 or response.status in (204, 304):
        return response
    if (response.get("transfer-encoding") or "").lower() == "chunked":
        response.chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            assert data[-2:] == b"\r\n", data[-10:]
            if size == 0:
                break
            response.chunks.append(data[:-2])
        response.body = b"".join(response.chunks)
    elif (length := response.get("content-length")) is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()  # delimited by the close
    return response


def get(path: str = "/", *headers: str, method: str = "GET", version: str = "1.1", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(path: str, body: bytes, *headers: str) -> bytes:
    return get(path, *headers, method="POST", body=body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def answer_path(scope: Any, proto: Any) -> None:
    """A plain application: the body read, the path and body echoed."""
    body = await proto()
    proto.response_bytes(200, [("content-type", "text/plain")], scope.path.encode() + b" " + body)


# -- 1. requests and answers -------------------------------------------------------------------
def test_get_and_post_scope_and_answer_through_httpx() -> None:
    seen: list[tuple[Any, bytes]] = []

    async def app(scope: Any, proto: Any) -> None:
        body = await proto()
        seen.append((scope, body))
        proto.response_bytes(201 if body else 200, [("content-type", "text/plain"), ("x-Mixed-Case", "v")],
                             b"got " + body)

    async def main() -> None:
        async with serve(app) as server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            r = await client.get("/v1beta/models/g%3Ax:streamGenerateContent?alt=sse&q=a%20b+c",
                                 headers=[("X-Multi", "one"), ("x-multi", "two"), ("Accept", "*/*")])
            assert (r.status_code, r.reason_phrase, r.content) == (200, "OK", b"got ")
            assert r.headers["content-length"] == "4" and r.headers["content-type"] == "text/plain"
            assert r.headers["x-mixed-case"] == "v"
            assert parsedate_to_datetime(r.headers["date"]).tzinfo is not None
            r = await client.post("/v1/chat/completions", content=b'{"model": "m"}')
            assert (r.status_code, r.reason_phrase, r.content) == (201, "Created", b'got {"model": "m"}')
            assert r.headers["content-length"] == str(len(b'got {"model": "m"}'))

            (get_scope, get_body), (post_scope, post_body) = seen
            assert (get_scope.proto, get_scope.method, get_scope.http_version, get_scope.scheme) == (
                "http", "GET", "1.1", "http")
            assert get_scope.path == "/v1beta/models/g:x:streamGenerateContent"  # percent-decoded
            assert get_scope.query_string == "alt=sse&q=a%20b+c"  # as sent
            assert get_body == b""
            headers = get_scope.headers
            assert headers.get("x-multi") == "one" and headers.get_all("x-multi") == ["one", "two"]
            assert headers.get("accept") == "*/*" and headers.get("host") == f"127.0.0.1:{server.port}"
            assert headers.get("X-Multi") is None and headers.get("missing", "dflt") == "dflt"
            assert "x-multi" in headers and headers.get_all("missing") == []
            assert all(k == k.lower() for k, _ in headers.items())
            assert get_scope.server == f"127.0.0.1:{server.port}"
            assert (post_scope.method, post_scope.path, post_scope.query_string) == ("POST", "/v1/chat/completions", "")
            assert post_body == b'{"model": "m"}' and post_scope.headers.get("content-length") == "14"
            assert post_scope.client == get_scope.client  # the same kept-alive connection
    run(main())


def test_an_absolute_form_target_is_served_by_its_path() -> None:
    """RFC 9112 3.2.2: a server accepts `POST http://host/path` and routes on the path."""

    async def main() -> None:
        async with serve(answer_path) as server:
            client = await server.open()
            answer = await client.request(post("http://elsewhere:8080/v1/chat/completions?x=1", b"{}"))
            assert (answer.status, answer.body) == (200, b"/v1/chat/completions {}")
            client.close()
    run(main())


def test_client_address_and_the_raw_status_line() -> None:
    scopes: list[Any] = []

    async def app(scope: Any, proto: Any) -> None:
        scopes.append(scope)
        proto.response_bytes(200, [], b"ok")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/a%20b/%E2%82%AC?x=%2F"))
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\ncontent-length: 2\r\n" in head and b"\r\ndate: " in head
            assert b"connection:" not in head.lower()  # kept alive: nothing said
            assert await client.reader.readexactly(2) == b"ok"
            (scope,) = scopes
            assert scope.client == f"127.0.0.1:{client.port}"
            assert (scope.path, scope.query_string) == ("/a b/€", "x=%2F")
            client.close()
    run(main())


def test_response_kinds_status_reasons_and_server_owned_headers(tmp_path: Path) -> None:
    asset = tmp_path / "asset.css"
    asset.write_bytes(b"body { color: red }")

    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/str":
            proto.response_str(200, [("content-type", "text/plain; charset=utf-8")], "héllo")
        elif scope.path == "/empty":
            proto.response_empty(202, [("x-a", "1")])
        elif scope.path == "/file":
            proto.response_file(200, [("content-type", "text/css")], str(asset))
        elif scope.path == "/teapot":
            proto.response_bytes(418, [], b"short and stout")
        elif scope.path == "/odd":
            proto.response_bytes(599, [], b"?")
        else:  # framing headers are the server's: the application's are dropped
            proto.response_bytes(200, [("Content-Length", "999"), ("transfer-encoding", "chunked"),
                                       ("Connection", "close"), ("date", "yesterday"), ("x-kept", "yes")], b"abc")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/str"))
            assert (r.status, r.body, r.get("content-length")) == (200, "héllo".encode(), "6")
            r = await client.request(get("/empty"))
            assert (r.status, r.reason, r.body, r.get("content-length"), r.get("x-a")) == (202, "Accepted", b"", "0", "1")
            r = await client.request(get("/file"))
            assert (r.body, r.get("content-type")) == (b"body { color: red }", "text/css")
            r = await client.request(get("/teapot"))
            assert (r.status, r.reason, r.body) == (418, "I'm a Teapot", b"short and stout")
            r = await client.request(get("/odd"))
            assert (r.status, r.reason, r.body) == (599, "", b"?")
            r = await client.request(get("/framing"))
            assert (r.body, r.all("content-length"), r.get("transfer-encoding"), r.get("connection")) == (
                b"abc", ["3"], None, None)
            assert len(r.all("date")) == 1 and r.get("date") != "yesterday" and r.get("x-kept") == "yes"
            r = await client.request(get("/str"))  # and the connection is still in step
            assert r.body == "héllo".encode()
            client.close()
    run(main())


# -- 2. request bodies -------------------------------------------------------------------------
def test_chunked_body_is_read_by_chunks_as_they_arrive() -> None:
    got: list[bytes] = []
    arrived = asyncio.Queue[int]()

    async def app(scope: Any, proto: Any) -> None:
        if scope.path != "/up":
            return await answer_path(scope, proto)
        assert scope.headers.get("transfer-encoding") == "chunked"
        async for piece in proto:
            got.append(piece)
            arrived.put_nowait(len(piece))
        proto.response_bytes(200, [], b"%d" % len(got))

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(post("/up", b"", "Transfer-Encoding: chunked"))
            for piece in (b"first", b"second piece", b"x" * 3000):
                client.send(chunk(piece))
                assert await arrived.get() == len(piece)  # delivered before the next was sent
            client.send(b"0\r\n\r\n")
            r = await client.response()
            assert r.body == b"3" and got == [b"first", b"second piece", b"x" * 3000]
            assert all(got)  # never an empty chunk
            assert r.get("connection") is None
            assert (await client.request(get("/again"))).status == 200  # kept alive after a chunked body
            client.close()
    run(main())


def test_chunked_body_larger_than_the_buffer_is_read_whole_by_chunks() -> None:
    body = bytes(range(256)) * (3 * MiB // 256)
    digests: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        h = hashlib.sha256()
        async for piece in proto:
            h.update(piece)
        digests.append(h.hexdigest())
        proto.response_bytes(200, [], b"")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(post("/up", b"", "Transfer-Encoding: chunked"))
            for i in range(0, len(body), 100_000):
                client.send(chunk(body[i:i + 100_000]))
            client.send(b"0\r\n\r\n")
            assert (await client.response()).status == 200
            assert digests == [hashlib.sha256(body).hexdigest()]
            client.close()
    run(main())


def test_content_length_body_over_the_buffer_is_read_whole() -> None:
    """`await proto()` of a body over BODY_BUFFER: the fast path intake.read_body takes for every
    Content-Length body (up to max_body_bytes, MBs for images and documents)."""
    body = b"z" * (2 * MiB)
    assert len(body) > 4 * BODY_BUFFER

    async def main() -> None:
        async with serve(answer_path) as server:
            client = await server.open()
            client.send(post("/whole", body))
            async with asyncio.timeout(1):
                r = await client.response()
            assert r.body == b"/whole " + body
            client.close()
    run(main())


@pytest.mark.parametrize("when", ["with-the-head", "after-a-good-chunk"])
def test_malformed_chunked_body_fails_the_iterator(when: str) -> None:
    outcome: list[BaseException | bytes] = []
    first = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        pieces = []
        try:
            async for piece in proto:
                pieces.append(piece)
                first.set()
        except RSGIProtocolClosed as exc:
            outcome.append(exc)
        else:
            outcome.append(b"".join(pieces))
        proto.response_bytes(400, [], b"malformed")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            head = post("/up", b"", "Transfer-Encoding: chunked")
            if when == "with-the-head":
                client.send(head + b"zz\r\n{}\r\n0\r\n\r\n")
            else:
                client.send(head + chunk(b"good"))
                await first.wait()
                client.send(b"not a chunk size\r\n")
            rest = await client.rest()
            assert len(outcome) == 1 and isinstance(outcome[0], RSGIProtocolClosed), outcome
            # either the server's 400 or the application's, and the connection is closed
            assert rest in (b"", RESET) or rest.startswith(b"HTTP/1.1 400 "), rest
            client.close()
    run(main())


@pytest.mark.parametrize("read", [True, False])
def test_malformed_chunked_body_still_gets_the_application_answer(read: bool) -> None:
    async def app(scope: Any, proto: Any) -> None:
        if read:  # the key was good: the body is read, fails, and the answer is a 400
            with pytest.raises(RSGIProtocolClosed):
                async for _ in proto:
                    pass
            proto.response_bytes(400, [], b"malformed body")
        else:  # no key: refused before the body is read (test_intake_malformed's 401 case)
            proto.response_bytes(401, [], b"no key")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(post("/up", b"", "Transfer-Encoding: chunked") + b"zz\r\n{}\r\n0\r\n\r\n")
            r = await client.response()
            assert (r.status, r.body) == ((400, b"malformed body") if read else (401, b"no key"))
            assert r.get("connection") == "close"
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())


def test_body_cut_by_a_half_close_fails_the_read_and_the_answer_is_still_read() -> None:
    outcome: list[BaseException] = []

    async def app(scope: Any, proto: Any) -> None:
        try:
            async for _ in proto:
                pass
        except RSGIProtocolClosed as exc:
            outcome.append(exc)
        proto.response_bytes(400, [], b"cut")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(post("/up", b"", "Transfer-Encoding: chunked") + b"10\r\n{\"model\": ")
            client.writer.write_eof()
            r = await client.response()
            assert (r.status, r.body) == (400, b"cut")
            assert len(outcome) == 1
            client.close()
    run(main())


def test_body_cut_by_the_client_closing_raises_protocol_closed() -> None:
    reading = asyncio.Event()
    outcome: asyncio.Future[BaseException | bytes] | None = None

    async def app(scope: Any, proto: Any) -> None:
        assert outcome is not None
        reading.set()
        try:
            outcome.set_result(await proto())
        except RSGIProtocolClosed as exc:
            outcome.set_result(exc)

    async def main() -> None:
        nonlocal outcome
        outcome = asyncio.get_running_loop().create_future()
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/up", "Content-Length: 1000", method="POST") + b'{"model":')
            await reading.wait()
            client.close()
            assert isinstance(await outcome, RSGIProtocolClosed)
            await until(lambda: not server.serving.connections, "the connection to be dropped")
    run(main())


def test_reading_the_body_twice_is_a_protocol_error() -> None:
    errors: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/whole":
            assert await proto() == b"data"
        else:
            assert [piece async for piece in proto] == [b"data"]
        with pytest.raises(RSGIProtocolError):
            await proto()
        with pytest.raises(RSGIProtocolError):
            proto.__aiter__()
        errors.append(scope.path)
        proto.response_bytes(200, [], b"")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            assert (await client.request(post("/whole", b"data"))).status == 200
            assert (await client.request(post("/chunks", b"", "Transfer-Encoding: chunked") + chunk(b"data")
                                         + b"0\r\n\r\n")).status == 200
            assert errors == ["/whole", "/chunks"]
            client.close()
    run(main())


def test_trailers_are_not_request_headers() -> None:
    seen: list[list[str]] = []

    async def app(scope: Any, proto: Any) -> None:
        assert await proto() == b"abc"
        seen.append(scope.headers.get_all("x-trailer") + [k for k, _ in scope.headers.items() if k == "x-trailer"])
        proto.response_bytes(200, [], b"")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(post("/t", b"", "Transfer-Encoding: chunked", "Trailer: x-trailer")
                                     + chunk(b"abc") + b"0\r\nx-trailer: t\r\n\r\n")
            assert r.status == 200 and seen == [[]]
            client.close()
    run(main())


# -- 3. keep-alive, close, HTTP/1.0, pipelining ------------------------------------------------
def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    clients: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        clients.append(scope.client)
        await answer_path(scope, proto)

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            for i in range(5):
                r = await client.request(post(f"/r{i}", b"b%d" % i) if i % 2 else get(f"/r{i}"))
                assert r.body == f"/r{i} ".encode() + (b"b%d" % i if i % 2 else b"")
                assert r.get("connection") is None
            assert clients == [f"127.0.0.1:{client.port}"] * 5
            assert len(server.serving.connections) == 1
            client.close()
    run(main())


@pytest.mark.parametrize("request_bytes", [get("/", "Connection: close"), get("/", "Connection: keep-alive, close"),
                                           get("/", version="1.0")], ids=["close", "keep-alive-close", "http10"])
def test_close_requested_or_http10_is_answered_with_close_then_closed(request_bytes: bytes) -> None:
    paths: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        paths.append(scope.path)
        await answer_path(scope, proto)

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(request_bytes)
            assert (r.status, r.body, r.get("connection")) == (200, b"/ ", "close")
            assert await client.rest() in (b"", RESET)
            assert paths == ["/"]
            client.close()
    run(main())


@pytest.mark.parametrize("first", [get("/", "Connection: close"), get("/", version="1.0")], ids=["close", "http10"])
def test_a_request_pipelined_after_a_closing_one_does_not_lose_its_answer(first: bytes) -> None:
    paths: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        paths.append(scope.path)
        await answer_path(scope, proto)

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(first + get("/never"))
            assert (r.status, r.body, r.get("connection")) == (200, b"/ ", "close")
            assert await client.rest() in (b"", RESET)
            assert paths == ["/"]
            client.close()
    run(main())


def test_http10_keep_alive_stays_open() -> None:
    async def main() -> None:
        async with serve(answer_path) as server:
            client = await server.open()
            for path in ("/a", "/b"):
                r = await client.request(get(path, "Connection: keep-alive", version="1.0"))
                # said, or an HTTP/1.0 client closes the connection itself
                assert r.body == path.encode() + b" " and r.get("connection") == "keep-alive"
            r = await client.request(get("/c"))  # HTTP/1.1 keeps alive by default: nothing said
            assert r.body == b"/c " and r.get("connection") is None
            client.close()
    run(main())


def test_server_without_keep_alive_closes_after_each_answer() -> None:
    async def main() -> None:
        async with serve(answer_path, keep_alive=False) as server:
            client = await server.open()
            r = await client.request(get("/a"))
            assert r.get("connection") == "close" and await client.rest() in (b"", RESET)
            client.close()
    run(main())


def test_pipelined_requests_are_served_one_at_a_time_in_order() -> None:
    log: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        log.append("start " + scope.path)
        body = await proto()
        for _ in range(5):
            await asyncio.sleep(0)  # room for a concurrent start, if the server allowed one
        log.append("end " + scope.path)
        proto.response_bytes(200, [], scope.path.encode() + b":" + body)

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/1") + post("/2", b"two") + get("/3") + post("/4", b"four", "Connection: close"))
            bodies = [(await client.response()).body for _ in range(4)]
            assert bodies == [b"/1:", b"/2:two", b"/3:", b"/4:four"]
            assert log == [f"{what} /{i}" for i in range(1, 5) for what in ("start", "end")]
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())


# -- 4. Expect: 100-continue -------------------------------------------------------------------
def test_expect_100_continue_is_sent_when_the_body_is_read() -> None:
    go = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/read":
            await go.wait()
            body = await proto()
            proto.response_bytes(200, [], b"read " + body)
        else:
            proto.response_bytes(200, [], b"plain")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/read", "Content-Length: 5", "Expect: 100-continue", method="POST"))
            go.set()
            assert await client.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            client.send(b"hello")
            r = await client.response()
            assert (r.status, r.body, r.get("connection")) == (200, b"read hello", None)
            assert (await client.request(get("/next"))).body == b"plain"  # kept alive
            client.close()
    run(main())


def test_expect_100_continue_not_sent_when_the_app_answers_without_reading() -> None:
    async def app(scope: Any, proto: Any) -> None:
        proto.response_bytes(401, [("content-type", "application/json")], b'{"error": "no key"}')

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/v1/chat/completions", "Content-Length: 1000", "Expect: 100-continue", method="POST"))
            r = await client.response()  # the first thing the client reads is the answer, not a 100
            assert (r.status, r.reason, r.body) == (401, "Unauthorized", b'{"error": "no key"}')
            assert r.get("connection") == "close"  # the body was never received
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())


# -- 5. streamed answers, HEAD, bodiless statuses ----------------------------------------------
def test_response_stream_is_chunked_and_ends_when_the_app_returns() -> None:
    more = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        stream = proto.response_stream(200, [("content-type", "text/event-stream"), ("content-length", "5")])
        await stream.send_bytes(b"data: one\n\n")
        await more.wait()  # the first chunk reached the client before the app went on
        await stream.send_bytes(b"")  # nothing: not the end of the stream
        await stream.send_str("data: twö\n\n")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/sse"))
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\ntransfer-encoding: chunked\r\n" in head
            assert b"content-length" not in head
            assert await client.reader.readexactly(len(chunk(b"data: one\n\n"))) == chunk(b"data: one\n\n")
            more.set()
            rest = await client.reader.readuntil(b"0\r\n\r\n")
            assert rest == chunk("data: twö\n\n".encode()) + b"0\r\n\r\n"
            r = await client.request(get("/sse"))  # kept alive, in step
            assert r.chunks == [b"data: one\n\n", "data: twö\n\n".encode()]
            client.close()
    run(main())


def test_head_request_gets_the_head_only() -> None:
    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/bytes":
            proto.response_bytes(200, [("content-type", "text/plain")], b"twelve bytes")
        elif scope.path == "/stream":
            stream = proto.response_stream(200, [])
            await stream.send_bytes(b"not sent to a HEAD")
        else:
            proto.response_bytes(200, [], b"after")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/bytes", method="HEAD"), bodiless=True)
            assert (r.status, r.get("content-length")) == (200, "12")
            r = await client.request(get("/stream", method="HEAD"), bodiless=True)
            assert r.status == 200 and r.get("content-length") is None
            # nothing followed either head: the next answer starts right away
            r = await client.request(get("/get"))
            assert (r.status, r.body) == (200, b"after")
            client.close()
    run(main())


@pytest.mark.parametrize(("status", "how"), [(204, "bytes"), (304, "bytes"), (204, "empty"), (304, "empty")])
def test_204_and_304_have_no_length_and_no_body(status: int, how: str) -> None:
    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/next":
            proto.response_bytes(200, [], b"next")
        elif how == "bytes":
            proto.response_bytes(status, [("etag", '"e"')], b"a body that must not be sent")
        else:
            proto.response_empty(status, [("etag", '"e"')])

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/"))
            assert (r.status, r.get("etag")) == (status, '"e"')
            assert r.get("content-length") is None and r.get("transfer-encoding") is None
            r = await client.request(get("/next"))  # the bytes after the head are the next answer
            assert (r.status, r.body) == (200, b"next")
            client.close()
    run(main())


@pytest.mark.parametrize("status", [204, 304])
def test_streamed_204_and_304_have_no_body(status: int) -> None:
    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/next":
            proto.response_bytes(200, [], b"next")
        else:
            proto.response_stream(status, [])

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/"))
            assert r.status == status and r.get("transfer-encoding") is None
            client.send(get("/next"))
            assert await client.reader.readexactly(9) == b"HTTP/1.1 "  # not "0\r\n\r\nHTTP/..."
            client.close()
    run(main())


def test_streamed_answer_to_http10_is_close_delimited() -> None:
    async def app(scope: Any, proto: Any) -> None:
        stream = proto.response_stream(200, [])
        await stream.send_bytes(b"part one, ")
        await stream.send_bytes(b"part two")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/", version="1.0"))
            assert r.get("transfer-encoding") is None and r.get("connection") == "close"
            assert r.body == b"part one, part two"
            client.close()
    run(main())


# -- 6. the client going away ------------------------------------------------------------------
def test_client_disconnect_resolves_when_the_client_closes() -> None:
    waiting = asyncio.Event()
    resolved = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        await proto()
        gone = proto.client_disconnect()
        assert isinstance(gone, asyncio.Future) and not gone.done()
        waiting.set()
        await gone
        resolved.set()
        proto.response_bytes(200, [], b"to no one")  # written nowhere, raises nothing

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(post("/wait", b"{}"))
            await waiting.wait()
            assert not resolved.is_set()
            client.close()
            async with asyncio.timeout(1):
                await resolved.wait()
            await until(lambda: not server.serving.connections, "the connection to be dropped")
    run(main())


def test_send_on_a_stream_after_the_client_vanished_raises_protocol_closed() -> None:
    outcome: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        stream = proto.response_stream(200, [("content-type", "text/event-stream")])
        await stream.send_bytes(b"data: 1\n\n")
        await proto.client_disconnect()
        with pytest.raises(RSGIProtocolClosed):
            await stream.send_bytes(b"data: 2\n\n")
        with pytest.raises(RSGIProtocolClosed):
            await stream.send_str("data: 3\n\n")
        outcome.append("raised")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/sse"))
            await client.reader.readuntil(b"data: 1\n\n\r\n")
            client.close()
            await until(lambda: outcome == ["raised"], "the app to see the client gone", timeout=1)
    run(main())


# -- 7. limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sends", [1, 3])
@pytest.mark.parametrize("complete", [False, True])
def test_head_over_max_header_bytes_is_431(sends: int, complete: bool) -> None:
    """A head over the limit, still incomplete (the end never sent) or complete, whole or in a
    trickle: 431, then closed; the application is never called."""
    called: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        called.append(scope.path)
        proto.response_bytes(200, [], b"")

    async def main() -> None:
        async with serve(app, max_header_bytes=4096) as server:
            client = await server.open()
            head = get("/", *[f"x-h{i}: {'v' * 90}" for i in range(60)])  # ~6 KB
            head = head if complete else head[:-2]  # without the blank line: never complete
            size = -(-len(head) // sends)
            for i in range(sends):
                client.send(head[i * size:(i + 1) * size])
                if i < sends - 1:  # each piece read before the next is sent: a trickle
                    await until(lambda i=i: server.only().head_bytes >= (i + 1) * size, "the piece to be read")
            r = await client.response()
            assert (r.status, r.reason, r.get("connection")) == (431, "Request Header Fields Too Large", "close")
            assert await client.rest() in (b"", RESET)
            assert called == []
            client.close()
    run(main())


def test_head_just_under_max_header_bytes_is_served() -> None:
    async def main() -> None:
        async with serve(answer_path, max_header_bytes=4096) as server:
            client = await server.open()
            request = get("/", *[f"x-h{i}: {'v' * 90}" for i in range(40)])
            assert 3500 < len(request) < 4096
            r = await client.request(request)
            assert r.status == 200
            r = await client.request(request)  # and again on the same connection: counted afresh
            assert r.status == 200
            client.close()
    run(main())


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"])
def test_a_connection_without_a_complete_head_is_closed_after_the_header_timeout(sent: bytes) -> None:
    async def main() -> None:
        async with serve(answer_path, header_timeout_s=TIMEOUT_S) as server:
            loop = asyncio.get_running_loop()
            start = loop.time()
            client = await server.open()
            client.send(sent)
            assert await client.rest() in (b"", RESET)  # closed without an answer
            assert loop.time() - start >= TIMEOUT_S * 0.9
            await until(lambda: not server.serving.connections, "the connection to be dropped")
            client.close()
    run(main())


def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout() -> None:
    async def main() -> None:
        async with serve(answer_path, header_timeout_s=TIMEOUT_S) as server:
            loop = asyncio.get_running_loop()
            client = await server.open()
            r = await client.request(get("/a"))
            answered = loop.time()
            assert r.status == 200 and r.get("connection") is None
            assert await client.rest() in (b"", RESET)
            assert loop.time() - answered >= TIMEOUT_S * 0.9
            client.close()
    run(main())


def test_a_request_in_flight_is_not_closed_by_the_header_timeout() -> None:
    release = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/slow":
            await release.wait()
        proto.response_bytes(200, [], scope.path.encode())

    async def main() -> None:
        async with serve(app, header_timeout_s=TIMEOUT_S) as server:
            loop = asyncio.get_running_loop()
            start = loop.time()
            slow, idle = await server.open(), await server.open()
            slow.send(get("/slow"))
            assert await idle.rest() in (b"", RESET)  # the sweep ran and closed the idle one...
            assert loop.time() - start >= TIMEOUT_S * 0.9
            release.set()
            r = await slow.response()  # ...but not the one waiting for its answer
            assert (r.status, r.body, r.get("connection")) == (200, b"/slow", None)
            assert (await slow.request(get("/again"))).body == b"/again"
            slow.close()
            idle.close()
    run(main())


def test_max_connections_refuses_new_connections_at_once() -> None:
    async def main() -> None:
        async with serve(answer_path, max_connections=2) as server:
            first, second = await server.open(), await server.open()
            await until(lambda: len(server.serving.connections) == 2, "two connections")
            third = await server.open()
            assert await third.rest() in (b"", RESET)  # closed without an answer
            assert len(server.serving.connections) == 2
            for client, path in ((first, "/1"), (second, "/2")):
                assert (await client.request(get(path))).body == path.encode() + b" "
            first.close()
            await until(lambda: len(server.serving.connections) == 1, "the first to be dropped")
            fourth = await server.open()
            assert (await fourth.request(get("/4"))).body == b"/4 "  # room again
            for client in (second, third, fourth):
                client.close()
    run(main())


# -- 8. malformed requests, unsafe answer headers ----------------------------------------------
@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno-colon\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["request-line", "space-in-name", "no-colon", "space-in-target", "bad-length", "length-and-chunked"])
def test_malformed_request_is_400_and_closed(request_bytes: bytes) -> None:
    called: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        called.append(scope.path)
        proto.response_bytes(200, [], b"")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(request_bytes)
            assert (r.status, r.reason, r.get("connection"), r.body) == (400, "Bad Request", "close", b"")
            assert await client.rest() in (b"", RESET)
            assert called == []
            client.close()
    run(main())


def test_a_malformed_request_after_a_good_one_is_400_and_closed() -> None:
    async def main() -> None:
        async with serve(answer_path) as server:
            client = await server.open()
            assert (await client.request(get("/ok"))).body == b"/ok "
            r = await client.request(b"NOT HTTP AT ALL\r\n\r\n")
            assert (r.status, r.get("connection")) == (400, "close")
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())


def test_answer_header_values_with_cr_or_lf_are_dropped_not_split() -> None:
    async def app(scope: Any, proto: Any) -> None:
        proto.response_bytes(200, [("x-good", "ok"), ("x-bad", "a\r\nx-injected: 1"), ("x-lf", "b\nx-injected: 2"),
                                   ("x-cr", "c\rd"), ("x-nul", "e\0f"), ("x-after", "kept")], b"body")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/"))
            names = [k for k, _ in r.headers]
            assert r.get("x-good") == "ok" and r.get("x-after") == "kept" and r.body == b"body"
            assert not {"x-injected", "x-bad", "x-lf", "x-cr", "x-nul"} & set(names), r.head
            assert (await client.request(get("/"))).body == b"body"  # still in step
            client.close()
    run(main())


# -- 9. application failures -------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["raise", "return", "raise-after-reading"])
def test_app_failing_before_answering_is_500_and_closed(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, proto: Any) -> None:
        if failure == "raise-after-reading":
            await proto()
        if failure.startswith("raise"):
            raise ValueError("the application failed")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(post("/x", b"{}"))
            assert (r.status, r.reason, r.body, r.get("content-length"), r.get("connection")) == (
                500, "Internal Server Error", b"", "0", "close")
            assert await client.rest() in (b"", RESET)
            client.close()

    with caplog.at_level(logging.ERROR, logger="tollgate.server"):
        run(main())
    logged = [rec for rec in caplog.records if rec.name == "tollgate.server"]
    if failure.startswith("raise"):
        assert len(logged) == 1 and logged[0].exc_info is not None
        assert "POST /x" in logged[0].getMessage()
    else:
        assert logged == []


# -- 10. flow control --------------------------------------------------------------------------
@dataclass
class Watch:
    """What the application side measured while it streamed."""

    peak: int = 0  # the most bytes the server held for the client: its queue and the transport's
    sent: int = 0
    digest: str = ""


def held(conn: H1Connection) -> int:
    return sum(map(len, conn.out or ())) + conn.transport.get_write_buffer_size()


def streamer(watch: Watch, conns: list[H1Connection], size: int, count: int) -> Handler:
    async def app(scope: Any, proto: Any) -> None:
        (conn,) = conns
        h = hashlib.sha256()
        stream = proto.response_stream(200, [("content-type", "application/octet-stream")])
        for i in range(count):  # as fast as the sends return, no other await
            data = i.to_bytes(4, "big") * (size // 4)
            h.update(data)
            await stream.send_bytes(data)
            watch.sent += len(data)
            watch.peak = max(watch.peak, held(conn))
        watch.digest = h.hexdigest()
    return app


def small_send_buffer(conn: H1Connection) -> None:
    """The kernel's send buffer small (it grows to MBs on loopback): the server's own buffering shows."""
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)


async def read_slowly(client: Client, watch: Watch, conn: H1Connection, total: int) -> tuple[str, int]:
    """The client reads nothing until the server has had to stop, then in small pieces."""
    client.send(get("/big"))
    await until(lambda: conn.write_paused, "the server to pause writing")
    paused_at = watch.sent
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked\r\n" in head
    h = hashlib.sha256()
    received = 0
    while True:
        size = int((await client.reader.readuntil(b"\r\n"))[:-2], 16)
        left = size
        while left:
            data = await client.reader.read(min(left, 16384))
            assert data, "the stream ended early"
            h.update(data)
            left -= len(data)
        assert await client.reader.readexactly(2) == b"\r\n"
        if size == 0:
            break
        received += size
    assert received == total
    return h.hexdigest(), paused_at


def test_a_large_stream_to_a_slow_reader_is_intact_and_bounded() -> None:
    watch, conns = Watch(), list[H1Connection]()
    size, count = 16 * 1024, 1280  # 20 MiB

    async def main() -> None:
        async with serve(streamer(watch, conns, size, count)) as server:
            client = await server.open(rcvbuf=64 * 1024)
            await until(lambda: len(server.serving.connections) == 1, "the connection")
            conns.append(server.only())
            small_send_buffer(conns[0])
            digest, paused_at = await read_slowly(client, watch, conns[0], size * count)
            assert digest == watch.digest and watch.sent == size * count
            assert paused_at < 2 * MiB  # the server stopped early on, then went on to the end
            assert watch.peak < 2 * MiB, watch.peak
            assert (await client.request(get("/big"))).status == 200  # kept alive
            client.close()
    run(main(), limit=20)


def test_a_large_stream_in_big_chunks_is_bounded() -> None:
    watch, conns = Watch(), list[H1Connection]()
    size, count = MiB, 20

    async def main() -> None:
        async with serve(streamer(watch, conns, size, count)) as server:
            client = await server.open(rcvbuf=64 * 1024)
            await until(lambda: len(server.serving.connections) == 1, "the connection")
            conns.append(server.only())
            small_send_buffer(conns[0])
            digest, _ = await read_slowly(client, watch, conns[0], size * count)
            assert digest == watch.digest
            assert watch.peak < 4 * MiB, watch.peak
            client.close()
    run(main(), limit=20)


# -- 11. other upgrades ------------------------------------------------------------------------
def test_an_h2c_upgrade_is_answered_as_http11_then_closed() -> None:
    protos: list[str] = []

    async def app(scope: Any, proto: Any) -> None:
        protos.append(scope.proto)
        await answer_path(scope, proto)

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            r = await client.request(get("/h2", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                                         "HTTP2-Settings: AAMAAABkAAQAAP__"))
            assert (r.status, r.body, r.get("connection"), r.get("upgrade")) == (200, b"/h2 ", "close", None)
            assert await client.rest() in (b"", RESET)
            assert protos == ["http"]
            client.close()
    run(main())


def test_an_h2c_upgrade_with_a_body_reads_the_body() -> None:
    async def main() -> None:
        async with serve(answer_path) as server:
            client = await server.open()
            r = await client.request(post("/h2", b"payload", "Connection: Upgrade, HTTP2-Settings",
                                          "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__"))
            assert (r.status, r.body, r.get("connection")) == (200, b"/h2 payload", "close")
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())


# -- 12. shutdown ------------------------------------------------------------------------------
def test_shut_all_closes_idle_connections_and_finishes_requests_in_flight() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        if scope.path == "/slow":
            started.set()
            await release.wait()
        await answer_path(scope, proto)

    async def main() -> None:
        async with serve(app) as server:
            idle, fresh, busy = await server.open(), await server.open(), await server.open()
            assert (await idle.request(get("/first"))).get("connection") is None
            busy.send(get("/slow"))
            await started.wait()
            await until(lambda: len(server.serving.connections) == 3, "three connections")
            server.serving.shut_all()
            assert await idle.rest() in (b"", RESET)  # closed at once, the answered one...
            assert await fresh.rest() in (b"", RESET)  # ...and the one that never sent a thing
            release.set()
            r = await busy.response()
            assert (r.status, r.body, r.get("connection")) == (200, b"/slow ", "close")
            assert await busy.rest() in (b"", RESET)
            late = await server.open()  # draining: refused
            assert await late.rest() in (b"", RESET)
            await until(lambda: not server.serving.connections, "every connection to be dropped")
            for client in (idle, fresh, busy, late):
                client.close()
    run(main())


def test_shut_all_during_a_stream_ends_it_then_closes() -> None:
    sent = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Any, proto: Any) -> None:
        stream = proto.response_stream(200, [])
        await stream.send_bytes(b"one")
        sent.set()
        await release.wait()
        await stream.send_bytes(b"two")

    async def main() -> None:
        async with serve(app) as server:
            client = await server.open()
            client.send(get("/s"))
            await sent.wait()
            server.serving.shut_all()
            release.set()
            r = await client.response()
            assert r.chunks == [b"one", b"two"]
            assert await client.rest() in (b"", RESET)
            client.close()
    run(main())
