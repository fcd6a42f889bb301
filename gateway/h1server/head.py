"""An answer's head: the status line, the application's headers, and what the server adds
(`content-length` or chunked framing, `date`, `connection: close`, or `connection: keep-alive`
for an HTTP/1.0 client kept alive)."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

_LINES: dict[int, bytes] = {}
_date: list[object] = [0, b""]  # [the second it was made for, "date: ...\r\n"]
# Framing headers are the server's: the application's would contradict the body it sends.
_OURS = frozenset(("content-length", "transfer-encoding", "connection", "date"))
_CLOSE = b"connection: close\r\n\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = _LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode()
    return line


def _date_line() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, f"date: {formatdate(now, usegmt=True)}\r\n".encode()
    line = _date[1]
    assert isinstance(line, bytes)
    return line


def render_head(status: int, headers: list[tuple[str, str]], length: int | None, close: bool,
                chunked: bool = True, keep_alive: bool = False) -> bytes:
    """`length` None: a chunked body (or none, for statuses that have none). `keep_alive`: say
    `connection: keep-alive` (an HTTP/1.0 client that asked for it closes without it)."""
    kept = [f"{k}: {v}\r\n" for k, v in headers if k.lower() not in _OURS]
    lines = "".join(kept)
    if lines.count("\n") != len(kept) or lines.count("\r") != len(kept) or "\0" in lines:
        lines = _clean(headers)  # a CR, LF or NUL inside a name or value: never split the answer
    if status < 200 or status in (204, 304):
        framing = b""
    elif length is None:
        framing = b"transfer-encoding: chunked\r\n" if chunked else b""
    else:
        framing = b"content-length: %d\r\n" % length
    tail = _CLOSE if close else _KEEP_ALIVE if keep_alive else b"\r\n"
    return b"".join((status_line(status), lines.encode("latin-1", "replace"), framing, _date_line(), tail))


def _clean(headers: list[tuple[str, str]]) -> str:
    return "".join(
        [f"{k}: {v}\r\n" for k, v in headers
         if k.lower() not in _OURS and not any(c in k + v for c in "\r\n\0")]
    )
