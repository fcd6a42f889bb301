"""Upstream HTTP clients behind one small protocol (base.py), chosen by `--transport`.

`h1` (the default) is our own HTTP/1.1 client (h1client.py: asyncio protocol + httptools), the
fastest through the gateway on this machine; `aiohttp`, `httpx-aiohttp` and `httpx` (this
module) stay selectable (README, "The relay", has the measured ratios), and `httpx` keeps
`httpx.MockTransport` usable. Foreign exceptions are translated here, once, into
`UpstreamTimeout` / `UpstreamConnectError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx

from ...config.types import Timeouts
from .base import UpstreamClient, UpstreamConnectError, UpstreamTimeout


class _AiohttpResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from None
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from None

    async def aclose(self) -> None:
        # close() drops the connection: an unfinished upstream request is cancelled at once
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpClient:
    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeouts: Timeouts
    ) -> _AiohttpResponse:
        session = self._session or self._open()
        # total bounds the whole exchange, streamed body included
        timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect,
                                        sock_read=timeouts.read)
        try:
            response = await session.request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from None
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(str(exc) or "timed out")
    return UpstreamConnectError(type(exc).__name__)


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


def make_upstream_client(transport: str, pool_size: int) -> UpstreamClient:
    if transport == "h1":
        from .h1client import H1Client

        return H1Client(pool_size)
    if transport == "aiohttp":
        return AiohttpClient(pool_size)
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size, keepalive_expiry=60)
    if transport == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return HttpxClient(httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=None))
    return HttpxClient(httpx.AsyncClient(limits=limits, timeout=None))
