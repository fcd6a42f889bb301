"""The bases of the stream taps that translate (the `StreamTap` protocol, codec.py): the
upstream's bytes are split into complete server-sent events (../wire/sse.py), `_event` turns
each into client bytes, and when the upstream's stream ends, `_end` closes the client's stream
unless an event already did (`_done`: the upstream's own end, or an error it sent). `ChatInTap`
reads chat chunks (an OpenAI-family upstream), `ChatOutTap` writes them (an OpenAI client)."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from ...core.usage import TokenUsage
from ..wire.openai_chat import ChatChunk, chat_usage, chunk_decoder, encoder, stream_error
from ..wire.openai_usage import vendor_stream_usage
from ..wire.sse import SseReader, frame


class EventTap:
    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.error: str | None = None  # the usage row's error_type when the upstream failed mid-stream
        self.chars = 0  # text characters relayed (estimates when a stream is cut)
        self._reader = SseReader()
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(data) for _, data in self._reader.feed(chunk))

    def flush(self) -> bytes:
        out = b"".join(self._event(data) for _, data in self._reader.flush())
        return out if self._done else out + self._end()

    def _event(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _end(self) -> bytes:
        raise NotImplementedError


class ChatInTap(EventTap):
    """An upstream's chat.completion.chunk events in: `[DONE]` ends the client's stream (once), an
    event that is not a chunk may be the upstream's error (`_error`), each chunk goes to `_on_chunk`."""

    def _event(self, data: bytes) -> bytes:
        if data.strip() == b"[DONE]":
            return b"" if self._done else self._end()
        try:
            chunk = chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._error(stream_error(data))
        out = self._on_chunk(chunk)
        if chunk.usage is None and b'"usage"' in data:  # Moonshot, Groq: elsewhere in the chunk
            self.usage = vendor_stream_usage(data) or self.usage
        return out

    def _on_chunk(self, chunk: ChatChunk) -> bytes:
        raise NotImplementedError

    def _error(self, error: dict[str, Any] | None) -> bytes:
        raise NotImplementedError


class ChatOutTap(EventTap):
    """chat.completion.chunk events out to an OpenAI client: at the end, the usage chunk when the
    client asked for one (`stream_options.include_usage`), then `data: [DONE]`."""

    def __init__(self, chunk_id: str, model: str, include_usage: bool) -> None:
        super().__init__()
        self._include_usage = include_usage
        self._id, self._model, self._created = chunk_id, model, int(time.time())

    def _end(self) -> bytes:
        self._done = True
        out = b""
        if self._include_usage and self.usage is not None:
            doc = ChatChunk(id=self._id, model=self._model, created=self._created, choices=[],
                            usage=chat_usage(self.usage))
            out = frame(encoder.encode(doc))
        return out + b"data: [DONE]\n\n"
