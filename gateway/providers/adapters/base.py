"""The provider protocol: an adapter turns an `UpstreamCall` into an `UpstreamResponse`.

Adapters know nothing of client keys, rules or billing; they only speak their API family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ...config.snapshot import ProviderRuntime
from ..transport.base import UpstreamClient, UpstreamResponse

__all__ = ["Adapter", "UpstreamCall", "UpstreamResponse", "send_http"]


@dataclass(slots=True)
class UpstreamCall:
    provider: ProviderRuntime
    endpoint: str  # the upstream path after the API root, e.g. "chat/completions"
    method: str
    model: str  # the model name sent upstream
    body: bytes
    content_type: str
    stream: bool
    api_key: str
    headers: tuple[tuple[str, str], ...] = ()  # set by rules; added to the provider's own
    query: str = ""

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, provider: ProviderRuntime, endpoint: str, method: str, model: str, body: bytes,
                 content_type: str, stream: bool, api_key: str, headers: tuple[tuple[str, str], ...] = (),
                 query: str = "") -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.method = method
        self.model = model
        self.body = body
        self.content_type = content_type
        self.stream = stream
        self.api_key = api_key
        self.headers = headers
        self.query = query


class Adapter(Protocol):
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse: ...


async def send_http(
    client: UpstreamClient, call: UpstreamCall, url: str, auth_headers: Mapping[str, str]
) -> UpstreamResponse:
    # identity: streamed bytes are relayed raw, so they must not arrive compressed
    headers = {
        "content-type": call.content_type,
        "accept-encoding": "identity",
        **dict(call.provider.headers),
        **auth_headers,
    }
    headers.update(call.headers)
    if call.stream:
        headers["accept"] = "text/event-stream"
    body = call.body if call.method != "GET" else None
    return await client.send(call.method, url, headers, body, call.provider.timeouts)
