"""What every upstream HTTP client shares: the protocol the relay calls (`UpstreamClient.send` ->
`UpstreamResponse`) and the only exceptions it raises (`UpstreamTimeout`, `UpstreamConnectError`,
`UpstreamMaybeSent`). The clients (h1client.py, clients.py) import this module; none imports
another client, and the choice by `--transport` is `clients.make_upstream_client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from ...config.types import Timeouts


class UpstreamTimeout(Exception):
    pass


class UpstreamConnectError(Exception):
    pass


class UpstreamMaybeSent(UpstreamConnectError):
    """The connection failed after the request was written: the upstream may have acted on it."""


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeouts: Timeouts
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...
