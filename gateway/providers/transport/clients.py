"""Upstream HTTP clients behind one small protocol (base.py), chosen by `--transport`.

`h1` (the default) is our own HTTP/1.1 client (h1client.py: asyncio protocol + httptools), the
fastest through the gateway on this machine; `aiohttp` (aiohttp_client.py), `httpx-aiohttp` and
`httpx` (httpx_client.py) stay selectable (README, "The relay", has the measured ratios), and
`httpx` keeps `httpx.MockTransport` usable. Foreign exceptions are translated in those modules,
once, into `UpstreamTimeout` / `UpstreamConnectError`.

Only the selected transport's library is imported: a worker on the default `h1` never loads
aiohttp or httpx (~12 MB of RSS and ~140 ms of start-up, measured with benchmarks.bench_memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import UpstreamClient

if TYPE_CHECKING:
    from .aiohttp_client import AiohttpClient as AiohttpClient
    from .httpx_client import HttpxClient as HttpxClient


def __getattr__(name: str) -> Any:
    """`clients.HttpxClient` / `clients.AiohttpClient`, imported on first use."""
    if name == "HttpxClient":
        from .httpx_client import HttpxClient

        return HttpxClient
    if name == "AiohttpClient":
        from .aiohttp_client import AiohttpClient

        return AiohttpClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_upstream_client(transport: str, pool_size: int) -> UpstreamClient:
    if transport == "h1":
        from .h1client import H1Client

        return H1Client(pool_size)
    if transport == "aiohttp":
        from .aiohttp_client import AiohttpClient

        return AiohttpClient(pool_size)
    from .httpx_client import httpx_client

    return httpx_client(transport, pool_size)
