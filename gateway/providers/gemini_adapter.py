"""Google Gemini API: `POST {base_url}/v1beta/models/{model}:generateContent`, or
`:streamGenerateContent?alt=sse` when streaming, with `x-goog-api-key`."""

from __future__ import annotations

from urllib.parse import quote

from .base import UpstreamCall, UpstreamResponse, send_http
from .transport import UpstreamClient


def generate_url(base_url: str, model: str, stream: bool) -> str:
    root = base_url.rstrip("/").removesuffix("/v1beta")
    name = quote(model.removeprefix("models/"), safe="-._~")
    if stream:
        return f"{root}/v1beta/models/{name}:streamGenerateContent?alt=sse"
    return f"{root}/v1beta/models/{name}:generateContent"


class GeminiAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        url = generate_url(call.provider.base_url, call.model, call.stream)
        return await send_http(client, call, url, {"x-goog-api-key": call.api_key})
