"""Anthropic client -> Anthropic upstream and Gemini client -> Gemini upstream: the bytes pass
through (Anthropic's model name rewritten, and the provider's default max_tokens added when the
client sent none; Gemini's model is in the URL), usage is read from the answer or from the
stream events as they go by, unchanged."""

from __future__ import annotations

import msgspec

from ...core.usage import TokenUsage
from ..wire import anthropic as aw
from ..wire import gemini as gw
from ..wire.head import rewrite_json
from ..wire.openai_chat import error_kind
from ..wire.sse import SseReader
from .codec import Outgoing, StreamTap
from .openai_anthropic import default_max_tokens


class _AnthropicDoc(msgspec.Struct):
    usage: aw.AUsage | None = None


_anthropic_doc = msgspec.json.Decoder(_AnthropicDoc)


class _PassTap:
    """Forwards every chunk as it arrives; subclasses read usage from the complete events."""

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.error: str | None = None
        self.chars = 0
        self._reader = SseReader()

    def feed(self, chunk: bytes) -> bytes:
        for _, data in self._reader.feed(chunk):
            self._inspect(data)
        return chunk

    def flush(self) -> bytes:
        for _, data in self._reader.flush():
            self._inspect(data)
        return b""

    def _inspect(self, data: bytes) -> None:
        raise NotImplementedError


class AnthropicUsageTap(_PassTap):
    def __init__(self) -> None:
        super().__init__()
        self._au: aw.AUsage | None = None

    def _inspect(self, data: bytes) -> None:
        try:
            ev = aw.event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if ev.type == "content_block_delta" and ev.delta is not None:
            d = ev.delta
            self.chars += len(d.text or "") + len(d.partial_json or "") + len(d.thinking or "")
        elif ev.type == "message_start" and ev.message is not None:
            self._au = ev.message.usage
        elif ev.type == "message_delta" and ev.usage is not None:
            self._au = aw.merge_usage(self._au, ev.usage)
            self.usage = aw.token_usage(self._au)
        elif ev.type == "error":
            self.error = error_kind(ev.error)


class GeminiUsageTap(_PassTap):
    def _inspect(self, data: bytes) -> None:
        try:
            resp = gw.response_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        for cand in resp.candidates or ():
            for part in cand.content.parts if cand.content else ():
                self.chars += len(part.text or "")
        if resp.usageMetadata is not None:
            self.usage = gw.token_usage(resp.usageMetadata)
        if resp.error is not None:
            self.error = error_kind(resp.error)


_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])


def with_max_tokens(body: bytes, value: int) -> bytes:
    """`max_tokens` added (Anthropic requires it), every other field kept as sent."""
    doc = _fields.decode(body)
    doc.setdefault("max_tokens", msgspec.Raw(str(value).encode()))
    return msgspec.json.encode(doc)


class AnthropicPassthrough:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        body = out.body
        if out.upstream_model != out.model:
            body = rewrite_json(body, out.upstream_model, False)
        if b'"max_tokens"' not in body:  # a byte search: the body is decoded only when it lacks one
            body = with_max_tokens(body, default_max_tokens(out))
        return "messages", body

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            doc = _anthropic_doc.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return body, None
        return body, aw.token_usage(doc.usage) if doc.usage else None

    def stream(self, out: Outgoing) -> StreamTap:
        return AnthropicUsageTap()


class GeminiPassthrough:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        return "generateContent", out.body

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp = gw.response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return body, None
        return body, gw.token_usage(resp.usageMetadata) if resp.usageMetadata else None

    def stream(self, out: Outgoing) -> StreamTap:
        return GeminiUsageTap()
