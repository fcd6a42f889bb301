"""A codec composed of two, through the OpenAI chat format as the internal representation: the
client's request is translated to chat and the chat request to the upstream's format; the
answer and each stream chunk go the other way through both taps. Used for Anthropic client <->
Gemini upstream and back, and for the Responses API over chat (responses_chat.py); the pairs
are in the codec table, ../codecs.py.

Why: the two direct translators per family already exist and are tested, so composing them
costs one extra encode/decode per request or chunk and no new mapping code (N+M translators,
not N*M). What chat cannot carry (Anthropic thinking signatures, cache_control, Gemini
thought signatures) is lost on these two pairs only.
"""

from __future__ import annotations

from dataclasses import replace

from ...core.usage import TokenUsage
from .codec import Codec, Outgoing, StreamTap


class ChainedTap:
    """Upstream bytes -> `inner` (upstream format to chat) -> `outer` (chat to client format)."""

    def __init__(self, inner: StreamTap, outer: StreamTap) -> None:
        self.inner, self.outer = inner, outer
        self.usage: TokenUsage | None = None  # the upstream's, as the inner tap read it
        self.error: str | None = None

    @property
    def chars(self) -> int:
        """Read at the end only (the OpenAI pass-through tap counts them lazily)."""
        return self.inner.chars

    def feed(self, chunk: bytes) -> bytes:
        middle = self.inner.feed(chunk)
        out = self.outer.feed(middle) if middle else b""
        self.usage, self.error = self.inner.usage, self.inner.error or self.outer.error
        return out

    def flush(self) -> bytes:
        out = self.outer.feed(self.inner.flush()) + self.outer.flush()
        self.usage, self.error = self.inner.usage, self.inner.error or self.outer.error
        return out


class ViaChat:
    def __init__(self, client_to_chat: Codec, chat_to_upstream: Codec) -> None:
        self.client_side, self.upstream_side = client_to_chat, chat_to_upstream

    def _inner(self, out: Outgoing, body: bytes = b"") -> Outgoing:
        return replace(out, endpoint="chat/completions", body=body, client_wants_usage=True)

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        _, chat = self.client_side.request(out)
        return self.upstream_side.request(self._inner(out, chat))

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        chat, usage = self.upstream_side.response(body, self._inner(out))
        data, _ = self.client_side.response(chat, out)
        return data, usage

    def stream(self, out: Outgoing) -> StreamTap:
        return ChainedTap(self.upstream_side.stream(self._inner(out)), self.client_side.stream(out))

