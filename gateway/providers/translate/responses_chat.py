"""`POST /v1/responses` (the OpenAI Responses API: Codex CLI, `client.responses.create`) to
upstreams that do not speak it, through chat completions: the `responses` client format is
translated to a chat request (responses_request.py), which the existing chat codecs send on to
the upstream's family; the answer comes back as chat and is translated to a Response object
(responses_response.py) or to Responses stream events (responses_stream.py). Usage is the
upstream's, read by the chat codec, exactly as for `/v1/chat/completions`.

Where it applies (the codec table, ../codecs.py, composes `ResponsesToChat` with each upstream's
chat codec): `anthropic`, `gemini`, `openai-compatible` (vLLM, Ollama... have only chat
completions) and `mock` providers. `openai` and `azure` providers serve the Responses API
themselves and keep the byte-for-byte pass-through (openai_openai.py).
"""

from __future__ import annotations

import msgspec

from ...core.usage import TokenUsage
from ...errors import UpstreamError
from ..wire import responses as rw
from ..wire.openai_chat import encoder
from .codec import Outgoing, StreamTap
from .responses_request import decode_request, to_chat
from .responses_response import from_chat
from .responses_stream import ChatToResponsesTap

ENDPOINT = "responses"


class ResponsesToChat:
    """Responses client -> chat: the first half of every ViaChat pair below."""

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        return "chat/completions", encoder.encode(to_chat(decode_request(out.body), out.upstream_model))

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp, usage = from_chat(body, out.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the upstream sent an unreadable chat completion: {exc}") from None
        return rw.encoder.encode(resp), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return ChatToResponsesTap(out.upstream_model, out.body)

