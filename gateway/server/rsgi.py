"""The RSGI vocabulary the gateway uses (granian's HTTP scope and protocol), as typing
Protocols: what a handler may call, in one place (the RSGI spec: granian's docs/spec/RSGI.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol


class Headers(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


class Scope(Protocol):
    """`scope` of an HTTP request."""

    method: str
    path: str
    query_string: str
    client: str
    headers: Headers


class StreamTransport(Protocol):
    async def send_bytes(self, data: bytes) -> None: ...

    async def send_str(self, data: str) -> None: ...


class Proto(Protocol):
    """`protocol` of an HTTP request: the body in (whole or by chunks), one response out."""

    def __call__(self) -> Awaitable[bytes]: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def __anext__(self) -> Awaitable[bytes]: ...

    def client_disconnect(self) -> Awaitable[None]: ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> StreamTransport: ...

    def response_file(self, status: int, headers: list[tuple[str, str]], file: str) -> None: ...


class WebsocketMessage(Protocol):
    """A received WebSocket message: `kind` 0 the client closed, 1 bytes, 2 text."""

    kind: int
    data: Any


class WebsocketTransport(Protocol):
    """An accepted WebSocket (granian closes it when the handler returns)."""

    def receive(self) -> Awaitable[WebsocketMessage]: ...

    def send_bytes(self, data: bytes) -> Awaitable[None]: ...

    def send_str(self, data: str) -> Awaitable[None]: ...


class WebsocketProto(Protocol):
    """`protocol` of a WebSocket upgrade: accept it, or refuse it with an HTTP status (no body)."""

    def accept(self) -> Awaitable[WebsocketTransport]: ...

    def close(self, status: int | None = None) -> Any: ...
