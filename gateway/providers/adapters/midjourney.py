"""Midjourney through a midjourney-proxy service: `{base_url}/{path}` (the paths and the proxy's
answers are ../wire/midjourney.py) with the provider's key in the `mj-api-secret` header."""

from __future__ import annotations

from ..transport.base import UpstreamClient
from ..wire.midjourney import SECRET_HEADER
from .base import UpstreamCall, UpstreamResponse, send_http


class MidjourneyAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        url = f"{call.provider.base_url.rstrip('/')}/{call.endpoint}"
        if call.query:
            url = f"{url}?{call.query}"
        auth = {SECRET_HEADER: call.api_key} if call.api_key else {}
        return await send_http(client, call, url, auth)
