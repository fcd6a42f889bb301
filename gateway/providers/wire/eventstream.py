"""AWS event-stream framing (`application/vnd.amazon.eventstream`), the binary framing of
Bedrock's ConverseStream: each message is a prelude (total and header lengths, CRC32), typed
headers (`:message-type`, `:event-type`, `:exception-type`...), a payload and a CRC32 of the
whole. Decoding is botocore's `EventStreamBuffer` (it checks both CRCs), imported on first use so
that a worker without a Bedrock provider never loads botocore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CONTENT_TYPE = "application/vnd.amazon.eventstream"


class FramingError(Exception):
    """The bytes are not valid event-stream framing (a bad prelude, a CRC mismatch...)."""


@dataclass(frozen=True, slots=True)
class Message:
    message_type: str  # event | exception | error
    event_type: str  # the event's name, or the exception's type
    payload: bytes


class EventStreamReader:
    """Feed raw chunks; get back the complete messages (a message may span chunks)."""

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer: Any = EventStreamBuffer()

    def feed(self, chunk: bytes) -> Iterator[Message]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(chunk)
        try:
            for raw in self._buffer:
                headers = raw.headers
                kind = str(headers.get(":message-type", "event"))
                name = headers.get(":event-type") or headers.get(":exception-type") or headers.get(
                    ":error-code", "")
                yield Message(kind, str(name), bytes(raw.payload))
        except ParserError as exc:
            raise FramingError(f"{type(exc).__name__}: {exc}") from None
