"""Gemini's default stream shape: `:streamGenerateContent` without `?alt=sse` answers with one
JSON array whose elements (GenerateContentResponse objects) arrive as the model produces them.

The relay and the codecs always speak SSE to Gemini clients; for a request without `alt=sse`,
the handler is given a wrapped RSGI protocol that turns each complete SSE event into the next
array element as it is sent, and closes the array when the handler returns.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs

from ..providers.wire.sse import SseReader
from .rsgi import Proto, Scope


def wants_json_array(scope: Scope, verb: str) -> bool:
    if verb != "streamGenerateContent":
        return False
    query = parse_qs(str(getattr(scope, "query_string", "") or ""))
    return "sse" not in query.get("alt", [])


class ArrayTransport:
    """SSE bytes in, array elements out: `[` before the first, `,` between, `]` at close."""

    def __init__(self, inner: Any) -> None:
        self._inner: Any = inner
        self._reader = SseReader()
        self._count = 0

    def _elements(self, events: list[tuple[str, bytes]]) -> bytes:
        out = []
        for _, data in events:
            if data.strip() == b"[DONE]":
                continue
            out += [b"[" if self._count == 0 else b",\r\n", data]
            self._count += 1
        return b"".join(out)

    async def send_bytes(self, data: bytes) -> None:
        out = self._elements(self._reader.feed(data))
        if out:
            await self._inner.send_bytes(out)

    async def send_str(self, data: str) -> None:
        await self.send_bytes(data.encode())

    async def close(self) -> None:
        out = self._elements(self._reader.flush())
        await self._inner.send_bytes(out + (b"]" if self._count else b"[]"))

    def release(self) -> None:
        self._inner = None


class JsonArrayProto:
    """An RSGI protocol whose streamed answer is a JSON array; everything else is passed on."""

    def __init__(self, proto: Proto) -> None:
        self._proto = proto
        self._stream: ArrayTransport | None = None

    async def __call__(self) -> Any:
        return await self._proto()

    def __aiter__(self) -> Any:  # `async for` looks dunders up on the type, not via __getattr__
        return self._proto.__aiter__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proto, name)

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if status < 400:  # a whole answer (an upstream that did not stream): a one-element array
            body = b"[" + body + b"]"
        self._proto.response_bytes(status, headers, body)

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> ArrayTransport:
        headers = [(k, "application/json; charset=UTF-8" if k == "content-type" else v) for k, v in headers]
        headers = [(k, v) for k, v in headers if k != "cache-control"]
        self._stream = ArrayTransport(self._proto.response_stream(status, headers))
        return self._stream

    async def finish(self) -> None:
        # granian ends the response body when the transport object is freed, not when the
        # handler returns, and others (the disconnect sweeper) may still hold this protocol:
        # drop the transport here so the answer ends now.
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with contextlib.suppress(RuntimeError):  # granian: the client is gone
            await stream.close()
        stream.release()
