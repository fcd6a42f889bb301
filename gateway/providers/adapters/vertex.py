"""Google Vertex AI, with a service account's OAuth token (../auth/google_token.py):

- Gemini models (publisher google): `POST {base_url}/v1/projects/{project}/locations/{location}/
  publishers/google/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse`; the body
  is Gemini's own (the Gemini codecs).
- Anthropic models (publisher anthropic, runtime kind `vertex-anthropic`): `.../publishers/
  anthropic/models/{model}:rawPredict`, or `:streamRawPredict`; the body is the Messages API's
  without `model` (it is in the path) and with `anthropic_version: "vertex-2023-10-16"`, set here
  because it is this API's envelope, not a translation (the Anthropic codecs wrote the rest).

base_url defaults to the location's endpoint (config/cloud.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

import msgspec

from ...config.types import VertexProvider
from ...errors import InvalidRequest
from ..auth.base import CredentialsUnavailable
from ..auth.google_token import token_source
from ..transport.base import UpstreamClient
from .base import UpstreamCall, UpstreamResponse, send_http
from .gemini import EMBED_VERBS

ANTHROPIC_VERSION = "vertex-2023-10-16"


def model_url(spec: VertexProvider, base_url: str, model: str) -> str:
    name = quote(model.removeprefix("models/"), safe="-._~@")
    return (f"{base_url.rstrip('/')}/v1/projects/{quote(spec.project, safe='')}/locations/"
            f"{quote(spec.location, safe='')}/publishers/{spec.publisher}/models/{name}")


def verb(spec: VertexProvider, stream: bool) -> str:
    if spec.publisher == "anthropic":
        return ":streamRawPredict" if stream else ":rawPredict"
    return ":streamGenerateContent?alt=sse" if stream else ":generateContent"


def anthropic_body(body: bytes) -> bytes:
    doc: dict[str, Any] = msgspec.json.decode(body)
    doc.pop("model", None)
    doc["anthropic_version"] = ANTHROPIC_VERSION
    return msgspec.json.encode(doc)


class VertexAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        spec = call.provider.spec
        assert isinstance(spec, VertexProvider)
        if call.endpoint in EMBED_VERBS:
            raise InvalidRequest("embeddings are not served by Vertex AI providers yet",
                                 code="unsupported_endpoint")
        url = model_url(spec, call.provider.base_url, call.model) + verb(spec, call.stream)
        if spec.publisher == "anthropic":
            call = replace(call, body=anthropic_body(call.body))
        account = call.provider.credentials.get("service_account", "")
        if not account:
            raise CredentialsUnavailable(f"vertex provider {call.provider.id} has no service account")
        token = await token_source(call.provider.id, account).token()
        return await send_http(client, call, url, {"authorization": f"Bearer {token}"})
