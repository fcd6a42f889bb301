"""Request bodies: read only after the client is authenticated (the callers' order), never kept
beyond the endpoint's limit whatever the framing, and a body that ends badly is a client error.

What granian 2.8 shows of a body, measured over real sockets:
- framed by Content-Length (and no Transfer-Encoding): hyper never delivers more than the
  declared length, which was checked against the limit, so `await proto()` (one call, the fast
  path) is safe. It raises ProtocolClosed when the connection ends before the declared length:
  with this framing the only cause is a client that went away -> BodyCut, recorded as 499.
- chunked (or anything else): read chunk by chunk, refused as soon as it passes the limit.
  The iterator turns an error into an empty chunk followed by its (empty) end, while data chunks
  are never empty: an empty chunk with anything after it is a failed body. Malformed framing (a
  bad chunk size, a body that is not chunked at all) and a connection cut mid-body look alike
  there -> MalformedBody, a 400 that a client still connected reads. (A chunked body with
  trailers looks alike too; no API client sends them.)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# granian.rsgi re-exports these as ProtocolClosed / ProtocolError; the stub names them here
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError

from ..config.snapshot import KeyRuntime, Snapshot
from ..core.sweep import Sweep, sweep_of
from ..errors import BodyCut, BodyTimeout, BodyTooLarge, MalformedBody
from .auth import check_ip, identify
from .disconnect import current_task
from .exchange import Exchange
from .rsgi import Proto, Scope

# After an early answer (a refusal before the body was read, or a body over the limit) what the
# client still sends is read and dropped, up to DRAIN_CAP bytes and DRAIN_S seconds: hyper closes
# a connection whose request body was not read to its end, and data left unread makes the kernel
# reset it, so many clients would see a reset instead of the answer. Nothing drained is kept.
DRAIN_CAP = 64 << 20
DRAIN_S = 10.0
BODY_TIMEOUT_S = 300.0  # the whole body, however framed (ServeSettings.body_timeout_s)
DEADLINE_SWEEP_S = 1.0  # how late a body timeout may fire


def authenticate_request(snap: Snapshot, secret: str | None, ip: str, x: Exchange) -> KeyRuntime:
    """The request's key, before its body is read; recorded on `x` even when its IP is refused."""
    key = x.key = identify(snap, secret)
    check_ip(key, ip)
    return key


def content_length(scope: Scope) -> int | None:
    """The declared length when hyper frames the body by it (no Transfer-Encoding)."""
    if scope.headers.get("transfer-encoding") is not None:
        return None
    length = scope.headers.get("content-length")
    return int(length) if length is not None and str(length).isdigit() else None


async def read_body(scope: Scope, proto: Proto, limit: int, timeout: float = BODY_TIMEOUT_S) -> bytes:
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    read, sweep = _deadlines.start(timeout)
    try:
        if declared is not None or not hasattr(type(proto), "__aiter__"):
            try:  # the whole body at once (inline: a coroutine less per request)
                body = await proto()
            except ProtocolClosed:
                raise BodyCut(
                    f"the connection ended before the end of the {declared}-byte request body"
                ) from None
        else:
            body = await _chunks(proto, limit)
    except asyncio.CancelledError:
        if not read.expired:
            raise
        read.task.uncancel()
        raise BodyTimeout(f"the request body was not received within {timeout:g} seconds") from None
    finally:
        sweep.discard(read)
    if len(body) > limit:  # an RSGI protocol without streaming (test doubles): checked after
        raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    return body


class _Read:
    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task, self.deadline, self.expired = task, deadline, False

    def check(self, now: float) -> None:
        if self.deadline <= now and not self.expired:
            self.expired = True
            self.task.cancel()


class _Deadlines:
    """Body read deadlines on the loop's sweep (core/sweep.py: no timer per request), so a
    body timeout is noticed up to `DEADLINE_SWEEP_S` late."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # known: no getpid() per request

    def start(self, timeout: float) -> tuple[_Read, Sweep]:
        task = current_task(self._loop)
        assert task is not None
        loop = self._loop = task.get_loop()
        sweep = sweep_of(loop, DEADLINE_SWEEP_S)
        read = _Read(task, loop.time() + timeout)
        sweep.add(read)
        return read, sweep


_deadlines = _Deadlines()


async def _chunks(proto: Proto, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    ended = False
    try:
        async for chunk in proto:
            if ended:
                raise _malformed()
            if not chunk:
                ended = True  # the end, unless more follows (then it marked an error)
                continue
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ProtocolClosed:
        raise _malformed() from None
    return b"".join(chunks)


def _malformed() -> MalformedBody:
    return MalformedBody(
        "the request body is malformed: invalid chunked framing, or the body ended before its last chunk"
    )


async def discard_body(scope: Scope, proto: Proto) -> None:
    """Read and drop the rest of the body after an early answer (see DRAIN_CAP): where a read
    stopped (over the limit), the whole body when it was never read, nothing when it was."""
    declared = content_length(scope)
    if declared is not None and declared > DRAIN_CAP:
        return  # too much to be worth reading: the connection closes at once
    start = getattr(proto, "__aiter__", None)
    if start is None:
        return
    try:
        start()
    except ProtocolError:
        pass  # the body was taken: by `proto()` (nothing left) or by a read stopped at the limit
    else:
        if str(scope.headers.get("expect") or "").lower() == "100-continue":
            return  # never asked for: the client waits for a go-ahead and reads the answer instead
    drained = 0
    with contextlib.suppress(TimeoutError, StopAsyncIteration, ProtocolClosed, ProtocolError):
        async with asyncio.timeout(DRAIN_S):
            while drained <= DRAIN_CAP:
                drained += len(await proto.__anext__())
