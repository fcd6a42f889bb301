"""The `aiohttp` transport (`--transport aiohttp`): imported only by a worker that selects it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from ...config.types import Timeouts
from .base import UpstreamConnectError, UpstreamTimeout


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
