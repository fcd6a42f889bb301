"""The `httpx` and `httpx-aiohttp` transports: imported only by a worker that selects one of them
(or by a test that gives `HttpxClient` an `httpx.MockTransport`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx

from ...config.types import Timeouts
from .base import UpstreamConnectError, UpstreamTimeout


class _HttpxResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc) from None
        finally:
            await self._response.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc) from None

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxClient:
    """httpx's API (any transport, `httpx.MockTransport` included)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeouts: Timeouts
    ) -> _HttpxResponse:
        t = timeouts
        request = self.client.build_request(
            method,
            url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect),
        )
        try:
            async with asyncio.timeout(t.total):  # httpx has no total: bound the wait for headers
                return _HttpxResponse(await self.client.send(request, stream=True))
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def _translate_httpx(exc: httpx.HTTPError) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(str(exc) or "timed out")
    return UpstreamConnectError(type(exc).__name__)


def httpx_client(transport: str, pool_size: int) -> HttpxClient:
    """`httpx` (its own transport) or `httpx-aiohttp` (httpx's API over aiohttp)."""
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size, keepalive_expiry=60)
    if transport == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return HttpxClient(httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=None))
    return HttpxClient(httpx.AsyncClient(limits=limits, timeout=None))
