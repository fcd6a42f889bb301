"""Google Gemini API: `POST {base_url}/v1beta/models/{model}:generateContent`, or
`:streamGenerateContent?alt=sse` when streaming, with `x-goog-api-key`; the embedding verbs
(`:embedContent`, `:batchEmbedContents`) when the codec asks for one of them."""

from __future__ import annotations

from urllib.parse import quote

from ..transport.base import UpstreamClient
from .base import UpstreamCall, UpstreamResponse, send_http


def generate_url(base_url: str, model: str, stream: bool) -> str:
    root = base_url.rstrip("/").removesuffix("/v1beta")
    name = quote(model.removeprefix("models/"), safe="-._~")
    if stream:
        return f"{root}/v1beta/models/{name}:streamGenerateContent?alt=sse"
    return f"{root}/v1beta/models/{name}:generateContent"


EMBED_VERBS = frozenset({"embedContent", "batchEmbedContents"})


def embed_url(base_url: str, model: str, verb: str) -> str:
    return generate_url(base_url, model, False).rpartition(":")[0] + ":" + verb


class GeminiAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        if call.endpoint in EMBED_VERBS:
            url = embed_url(call.provider.base_url, call.model, call.endpoint)
        else:
            url = generate_url(call.provider.base_url, call.model, call.stream)
        return await send_http(client, call, url, {"x-goog-api-key": call.api_key})
