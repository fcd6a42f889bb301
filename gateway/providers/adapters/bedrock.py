"""AWS Bedrock's Converse API: `POST {base_url}/model/{modelId}/converse`, or
`/converse-stream` (answered in event-stream framing, ../wire/eventstream.py), SigV4-signed
(../auth/sigv4.py). The model id goes in the path, percent-encoded (ARNs and inference profile ids
contain `:` and `/`); the body was written by the Bedrock codec (../translate/openai_bedrock.py).

Why this adapter does not use `send_http`: the signature covers the headers it signs and the
body, so the header set is completed first (the provider's and the rules' headers included) and
signed last."""

from __future__ import annotations

from urllib.parse import quote

from ...config.types import BedrockProvider
from ..auth.sigv4 import signer_for
from ..transport.base import UpstreamClient
from ..wire.eventstream import CONTENT_TYPE as EVENTSTREAM
from .base import UpstreamCall, UpstreamResponse


def converse_url(base_url: str, model: str, stream: bool) -> str:
    verb = "converse-stream" if stream else "converse"
    return f"{base_url.rstrip('/')}/model/{quote(model, safe='')}/{verb}"


class BedrockAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        spec = call.provider.spec
        assert isinstance(spec, BedrockProvider)
        url = converse_url(call.provider.base_url, call.model, call.stream)
        headers = {
            "content-type": "application/json",
            "accept": EVENTSTREAM if call.stream else "application/json",
            "accept-encoding": "identity",
            **dict(call.provider.headers),
            **dict(call.headers),
        }
        signer = signer_for(call.provider.id, spec.region, call.provider.credentials)
        signed = await signer.sign("POST", url, headers, call.body)
        return await client.send("POST", url, signed, call.body, call.provider.timeouts)
