"""OpenAI client -> OpenAI-family upstream (openai, openai-compatible, azure, mock): bytes pass
through; only the model name and `stream_options.include_usage` are rewritten, and the usage
chunk is stripped when the client did not ask for it.

The stream goes through an SSE tap (`SseTap`): it finds the usage chunk, counts the text that
reached the client (for estimates when a stream is cut), and strips the usage-only chunk when
the client did not ask for it. Complete events are forwarded as soon as their chunk arrives."""

from __future__ import annotations

import msgspec

from ...core.usage import TokenUsage
from ..wire.head import rewrite_form_model, rewrite_json
from ..wire.openai_chat import error_kind, stream_error
from ..wire.openai_usage import normalise, usage_from_body
from ..wire.openai_usage_types import _Usage
from .codec import Outgoing, StreamTap
from .openai_stream_types import _Choice, _Event

STREAM_USAGE_ENDPOINTS = frozenset({"chat/completions", "completions"})


class OpenAICodec:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        model_changes = out.upstream_model != out.model
        if out.multipart:
            body = rewrite_form_model(out.body, out.upstream_model) if model_changes else out.body
            return out.endpoint, body
        want_usage = out.stream and out.endpoint in STREAM_USAGE_ENDPOINTS and not out.client_wants_usage
        preset = out.provider.preset if out.provider is not None else None
        drop = preset is not None and not preset.stream_options and b'"stream_options"' in out.body
        if preset is not None and not preset.stream_options:
            want_usage = False  # refused: the upstream sends its stream usage unasked (or it is estimated)
        if not model_changes and not want_usage and not drop:
            return out.endpoint, out.body
        return out.endpoint, rewrite_json(out.body, out.upstream_model if model_changes else None, want_usage,
                                          drop_stream_options=drop)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        return body, usage_from_body(body, out.endpoint)

    def stream(self, out: Outgoing) -> StreamTap:
        return SseTap(strip_usage=not out.client_wants_usage)


_event = msgspec.json.Decoder(_Event)


class SseTap:
    """Only events mentioning "usage" are decoded as they pass; the text relayed is counted
    from the kept events only when a stream ends without a usage chunk (the rare case)."""

    __slots__ = ("_buffer", "_chars", "_events", "error", "strip_usage", "usage")

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: TokenUsage | None = None
        self.error: str | None = None
        self._chars: int | None = None
        self._buffer = b""
        self._events: list[bytes] = []

    @property
    def chars(self) -> int:
        if self._chars is None:
            self._chars = sum(self._count(e) for e in self._events)
        return self._chars

    def feed(self, chunk: bytes) -> bytes:
        """Account for `chunk` and return what to forward to the client now."""
        data = self._buffer + chunk if self._buffer else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return b"" if self.strip_usage else chunk
        complete, self._buffer = data[: end + 2], data[end + 2 :]
        self._events.append(complete)
        self._chars = None
        if b'"error"' in complete and self.error is None:
            self._find_error(complete)
        if b'"usage"' not in complete:
            return complete if self.strip_usage else chunk
        kept = [e for e in complete.split(b"\n\n") if e and not self._inspect(e)]
        return b"".join(e + b"\n\n" for e in kept) if self.strip_usage else chunk

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest if self.strip_usage else b""

    def _find_error(self, events: bytes) -> None:
        for line in events.split(b"\n"):
            if line.startswith(b"data:") and (error := stream_error(line[5:])) is not None:
                self.error = error_kind(error)
                return

    def _inspect(self, event: bytes) -> bool:
        """Read the usage of one event; True when it is the usage-only chunk."""
        if b'"usage"' not in event:
            return False
        for doc in _documents(event):
            if doc.usage is not None:
                self.usage = normalise(doc.usage)
                return not doc.choices
            if doc.response is not None and doc.response.usage is not None:
                self.usage = normalise(doc.response.usage)  # part of the protocol: never stripped
            vendor = _vendor_usage(doc)
            if vendor is not None:
                self.usage = normalise(vendor)  # inside a content chunk: never stripped
        return False

    @staticmethod
    def _count(events: bytes) -> int:
        chars = 0
        for event in events.split(b"\n\n"):
            for doc in _documents(event):
                chars += len(doc.delta or "")
                for choice in doc.choices or ():
                    chars += _choice_chars(choice)
        return chars


def _vendor_usage(doc: _Event) -> _Usage | None:
    """Usage where some OpenAI-compatible servers put it instead of the chunk's `usage`."""
    if doc.x_groq is not None and doc.x_groq.usage is not None:
        return doc.x_groq.usage
    return next((c.usage for c in doc.choices or () if c.usage is not None), None)


def _documents(event: bytes) -> list[_Event]:
    docs = []
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]" or not payload:
            continue
        try:
            docs.append(_event.decode(payload))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return docs


def _choice_chars(choice: _Choice) -> int:
    chars = len(choice.text or "")
    delta = choice.delta
    if delta is not None:
        chars += len(delta.content or "") + len(delta.reasoning_content or "")
        chars += sum(len(call) for call in delta.tool_calls or ())
    return chars
