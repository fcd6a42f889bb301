"""Server-sent events on the wire: split a byte stream into complete events (LF or CRLF line
ends), and frame an outgoing event. Used by the translating stream taps."""

from __future__ import annotations


class SseReader:
    """Feed raw chunks; get back the complete events as (event name, data) pairs."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return []
        complete, self._buffer = data[:end], data[end + 2 :]
        return [parsed for raw in complete.split(b"\n\n") if (parsed := _parse(raw)) is not None]

    def flush(self) -> list[tuple[str, bytes]]:
        rest, self._buffer = self._buffer, b""
        parsed = _parse(rest.strip(b"\n")) if rest.strip() else None
        return [parsed] if parsed is not None else []


def _parse(raw: bytes) -> tuple[str, bytes] | None:
    name, data = "", []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if not data:
        return None
    return name, b"\n".join(data)


def frame(data: bytes, event: str | None = None) -> bytes:
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"
