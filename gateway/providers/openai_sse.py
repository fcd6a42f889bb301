"""An SSE tap on a relayed OpenAI-style stream: it finds the usage chunk, counts the text that
reached the client (for estimates when a stream is cut), and strips the usage-only chunk when
the client did not ask for it. Complete events are forwarded as soon as their chunk arrives."""

from __future__ import annotations

import msgspec

from ..core.usage import TokenUsage
from .wire.openai_chat import error_kind, stream_error
from .wire.openai_usage import _Usage, normalise


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[msgspec.Raw] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Response(msgspec.Struct):
    usage: _Usage | None = None


class _Event(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    response: _Response | None = None  # Responses API: usage arrives in `response.completed`
    delta: str | None = None  # Responses API text deltas


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
