"""OpenAI client -> OpenAI-family upstream: bytes pass through; only the model name and
`stream_options.include_usage` are rewritten, and the usage chunk is stripped when the client
did not ask for it."""

from __future__ import annotations

from ..core.usage import TokenUsage
from .codec import Outgoing, StreamTap, register
from .openai_sse import SseTap
from .wire.head import rewrite_form_model, rewrite_json
from .wire.openai_usage import usage_from_body

STREAM_USAGE_ENDPOINTS = frozenset({"chat/completions", "completions"})


class OpenAICodec:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        model_changes = out.upstream_model != out.model
        if out.multipart:
            body = rewrite_form_model(out.body, out.upstream_model) if model_changes else out.body
            return out.endpoint, body
        want_usage = out.stream and out.endpoint in STREAM_USAGE_ENDPOINTS and not out.client_wants_usage
        if not model_changes and not want_usage:
            return out.endpoint, out.body
        return out.endpoint, rewrite_json(out.body, out.upstream_model if model_changes else None, want_usage)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        return body, usage_from_body(body, out.endpoint)

    def stream(self, out: Outgoing) -> StreamTap:
        return SseTap(strip_usage=not out.client_wants_usage)


register("openai", "openai", OpenAICodec())
