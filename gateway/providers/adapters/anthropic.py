"""Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`."""

from __future__ import annotations

from ...config.types import AnthropicProvider
from ..transport.base import UpstreamClient
from .base import UpstreamCall, UpstreamResponse, send_http


def messages_url(base_url: str) -> str:
    root = base_url.rstrip("/").removesuffix("/v1")
    return f"{root}/v1/messages"


class AnthropicAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        spec = call.provider.spec
        version = spec.anthropic_version if isinstance(spec, AnthropicProvider) else "2023-06-01"
        auth = {"x-api-key": call.api_key, "anthropic-version": version}
        return await send_http(client, call, messages_url(call.provider.base_url), auth)
