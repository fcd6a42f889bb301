"""A fast mock OpenAI upstream: a raw asyncio (uvloop) protocol server, no framework.

POST .../chat/completions (any prefix) answers
- a JSON chat completion with `usage` when the request has no `"stream": true`;
- an SSE stream (chunked transfer encoding) of `--chunks` content events, a finish event, a
  usage event when `stream_options.include_usage` is true, then `data: [DONE]`.
GET /health answers 200; anything else 404.

`--latency-ms` delays every answer; `--chunk-delay-ms` paces every streamed event. A model
whose name ends in `-paced` is always paced by `--paced-delay-ms` (for the chunk-coalescing and
Nagle probe), whatever the other flags say.

It must not be the bottleneck: responses are pre-rendered per model, request bodies are decoded
with msgspec into a three-field struct, and an unpaced answer goes out in one write.

Run: python -m benchmarks.mock_upstream --port 9100 [--chunks 20] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import msgspec


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class Head(msgspec.Struct):
    model: str = "mock"
    stream: bool = False
    stream_options: StreamOptions | None = None


HEAD = msgspec.json.Decoder(Head)
PROMPT_TOKENS = 12
CREATED = 1_700_000_000


@dataclass(frozen=True)
class Config:
    chunks: int = 20
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    paced_delay_s: float = 0.005


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Renderer:
    """Pre-renders the answers for each (model, stream, include_usage)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.cache: dict[tuple[str, bool, bool], list[bytes]] = {}

    def render(self, model: str, stream: bool, usage: bool) -> list[bytes]:
        key = (model, stream, usage)
        parts = self.cache.get(key)
        if parts is None:
            parts = self._stream(model, usage) if stream else [self._json(model)]
            if len(self.cache) < 1024:
                self.cache[key] = parts
        return parts

    def _json(self, model: str) -> bytes:
        body = _json({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * self.chunks},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.chunks,
                      "total_tokens": PROMPT_TOKENS + self.chunks},
        })
        return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body))

    def _stream(self, model: str, usage: bool) -> list[bytes]:
        """Each element is one paced write: headers + first event, then one event each."""

        def event(choices: list[object], **extra: object) -> bytes:
            obj = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
                   "model": model, "choices": choices, **extra}
            return _chunked(b"data: " + _json(obj) + b"\n\n")

        events = [event([{"index": 0, "delta": {"role": "assistant", "content": "tok "},
                          "logprobs": None, "finish_reason": None}])]
        events += [event([{"index": 0, "delta": {"content": "tok "}, "logprobs": None,
                           "finish_reason": None}]) for _ in range(self.chunks - 1)]
        events.append(event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
        if usage:
            events.append(event([], usage={"prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.chunks,
                                           "total_tokens": PROMPT_TOKENS + self.chunks}))
        events.append(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n")
        events[0] = head + events[0]
        return events


HEALTH = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}"
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n"
             b"{\"error\":\"not found\"}")
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class MockProtocol(asyncio.Protocol):
    __slots__ = ("buf", "busy", "closing", "config", "loop", "renderer", "transport")

    def __init__(self, config: Config, renderer: Renderer, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.renderer = renderer
        self.loop = loop
        self.buf = b""
        self.busy = False  # a delayed answer is in flight: later (pipelined) requests wait
        self.closing = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        while self.buf and not self.busy and self.transport is not None:
            if not self._one():
                return

    def _one(self) -> bool:
        """Handle one complete request from the buffer; False when more bytes are needed."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 65536:
                self._fail()
            return False
        head = buf[:end]
        line_end = head.find(b"\r\n")
        request_line = head[:line_end] if line_end >= 0 else head
        parts = request_line.split(b" ")
        if len(parts) < 3:
            self._fail()
            return False
        method, path = parts[0], parts[1]
        lower = head.lower()
        length = 0
        chunked = False
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.find(b"\r\n", i + 2)
            length = int(lower[i + 17: j if j >= 0 else len(lower)].strip() or b"0")
        elif b"\r\ntransfer-encoding:" in lower and b"chunked" in lower:
            chunked = True
        close = b"\r\nconnection: close" in lower
        start = end + 4
        if chunked:
            decoded = _dechunk(buf, start)
            if decoded is None:
                return False
            body, consumed = decoded
            self.buf = buf[consumed:]
        else:
            if len(buf) - start < length:
                return False
            body = buf[start:start + length]
            self.buf = buf[start + length:]
        self.closing = close
        self._answer(method, path, body)
        return True

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD)
            self.transport.close()
        self.buf = b""

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        if method == b"POST" and path.split(b"?", 1)[0].endswith(b"/chat/completions"):
            try:
                head = HEAD.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                head = Head()
            usage = bool(head.stream_options and head.stream_options.include_usage)
            parts = self.renderer.render(head.model, head.stream, usage)
            delay = self.config.chunk_delay_s
            if head.stream and head.model.endswith("-paced"):
                delay = self.config.paced_delay_s
            if self.config.latency_s > 0 or (delay > 0 and len(parts) > 1):
                self.busy = True
                self.loop.call_later(self.config.latency_s, self._paced, parts, 0, delay)
                return
            self._write(b"".join(parts) if len(parts) > 1 else parts[0])
        elif method == b"GET" and path.startswith(b"/health"):
            self._write(HEALTH)
        else:
            self._write(NOT_FOUND)
        self._finish()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _paced(self, parts: list[bytes], index: int, delay: float) -> None:
        if self.transport is None:
            return
        if delay <= 0:
            self._write(b"".join(parts))
            index = len(parts)
        else:
            self._write(parts[index])
            index += 1
            if index < len(parts):
                self.loop.call_later(delay, self._paced, parts, index, delay)
                return
        self.busy = False
        self._finish()
        self._drain()

    def _finish(self) -> None:
        if self.closing and self.transport is not None:
            self.transport.close()


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    out: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return b"".join(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        out.append(buf[pos:pos + size])
        pos += size + 2


async def serve(host: str, port: int, config: Config, ready: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    renderer = Renderer(config.chunks)
    server = await loop.create_server(lambda: MockProtocol(config, renderer, loop), host, port,
                                      backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between streamed events")
    parser.add_argument("--paced-delay-ms", type=float, default=5.0, help="event delay for *-paced models")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the mock only listens on loopback")
    config = Config(chunks=max(1, args.chunks), latency_s=args.latency_ms / 1000,
                    chunk_delay_s=args.chunk_delay_ms / 1000, paced_delay_s=args.paced_delay_ms / 1000)

    def ready() -> None:
        print(f"mock upstream ready on http://{args.host}:{args.port} pid {os.getpid()}", flush=True)

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, config, ready))
    else:
        uvloop.run(serve(args.host, args.port, config, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
