"""One relayed Realtime session: frames both ways, as they come (text as text, binary as
binary, never parsed or re-encoded), each send awaited before the next receive (back-pressure
both ways); every `response.done` becomes a usage row and a limiter charge as it passes.

How a session ends (RSGI lets the gateway send no close code or reason to the client, so the
client learns why from an `error` event sent just before the close):
- the client closes or goes away: a response in progress is cancelled upstream and its usage
  (its `response.done`) billed, then the upstream is closed (1000);
- the upstream closes: the client is closed, after an `error` event naming the upstream's code
  and reason unless it closed normally (1000);
- a frame over `realtime_max_frame_bytes` either way: an `error` event, upstream closed with 1009;
- a budget spent by a response: that response is relayed, then an `error` event and the
  upstream closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ...config.snapshot import RouteTarget
from ..exchange import Exchange
from ..rsgi import WebsocketTransport
from ..state import WorkerState
from .connect import ENDPOINT, Session
from .events import Done, error_event, is_response_created, response_done

log = logging.getLogger("tollgate.realtime")
CANCEL = '{"type": "response.cancel"}'
CANCEL_WAIT_S = 5.0  # for the usage of a response the client left in the middle of


@dataclass(slots=True)
class Ending:
    """Why the session ended: the upstream's close code and reason, and what the client is told."""

    upstream_code: int = 1000
    upstream_reason: str = ""
    notice: str | None = None  # an `error` event for the client, sent before it is closed
    client_cancelled: bool = False


class Relay:
    def __init__(self, state: WorkerState, s: Session, session_id: str, transport: WebsocketTransport,
                 upstream: ClientConnection, target: RouteTarget) -> None:
        self.state, self.s, self.session_id = state, s, session_id
        self.transport, self.upstream, self.target = transport, upstream, target
        self.limit = state.settings.realtime_max_frame_bytes
        self.responses = 0
        self._started: tuple[datetime, float] | None = None  # the response in progress

    async def run(self) -> Ending:
        up = asyncio.ensure_future(self._from_upstream())
        down = asyncio.ensure_future(self._from_client())
        try:
            done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
        ending = (up if up in done else down).result()
        if ending.notice is not None and not ending.client_cancelled:
            with contextlib.suppress(Exception):  # the client may be gone too
                await self.transport.send_str(ending.notice)
        if ending.client_cancelled and self._started is not None:
            await self._cancel_response()
        await self.upstream.close(ending.upstream_code, ending.upstream_reason)
        return ending

    async def _cancel_response(self) -> None:
        """The client left mid-response: cancel it upstream and bill what it used (its
        `response.done`, status cancelled), waiting at most CANCEL_WAIT_S for it."""
        try:
            await self.upstream.send(CANCEL)
            async with asyncio.timeout(CANCEL_WAIT_S):
                while True:
                    data = await self.upstream.recv()
                    if isinstance(data, str) and (done := response_done(data)) is not None:
                        await self.bill(done)
                        return
        except (TimeoutError, ConnectionClosed):
            log.info("realtime session %s: a response cut by the client was not reported", self.session_id)

    async def _from_client(self) -> Ending:
        receive, send = self.transport.receive, self.upstream.send
        while True:
            try:
                message = await receive()
            except Exception:  # granian: the connection dropped without a close frame
                return Ending(1001, "client went away", client_cancelled=True)
            if message.kind == 0:
                return Ending(1000, "client closed", client_cancelled=True)
            data = message.data
            if _size(data) > self.limit:
                return _too_large("client event", self.limit)
            try:
                await send(data)  # str: a text frame, bytes: a binary frame, as received
            except ConnectionClosed as closed:
                return _upstream_closed(closed)

    async def _from_upstream(self) -> Ending:
        recv = self.upstream.recv
        send_str, send_bytes = self.transport.send_str, self.transport.send_bytes
        while True:
            try:
                data = await recv()
            except ConnectionClosed as closed:
                return _upstream_closed(closed, self.limit)
            spent = isinstance(data, str) and '"response.' in data and not await self._watch(data)
            try:
                await (send_str(data) if isinstance(data, str) else send_bytes(data))
            except Exception:  # granian: the client is gone
                return Ending(1001, "client went away", client_cancelled=True)
            if spent:
                return Ending(1008, "budget exhausted", error_event(
                    "budget_exceeded", "a budget (or the prepaid balance) of this API key is spent; "
                    "the session ended after the last response", "invalid_request_error"))

    async def _watch(self, text: str) -> bool:
        """Bill a `response.done`; False when a budget is now spent."""
        if is_response_created(text):
            self._started = (datetime.now(UTC), time.perf_counter())
        done = response_done(text)
        return True if done is None else await self.bill(done)

    async def bill(self, done: Done) -> bool:
        self.responses += 1
        snap = self.state.store.current  # a reload's prices apply to later responses
        x = Exchange(ENDPOINT)
        if self._started is not None:
            x.started_at, x.t0 = self._started
            self._started = None
        s = self.s
        x.key, x.requested_model, x.tags = s.key, s.model, s.key.tags + tuple(
            t for t in s.decision.tags if t not in s.key.tags)
        x.provider, x.served_model, x.attempts = self.target.provider, self.target.model, 1
        x.status, x.stream, x.usage = 200, True, done.usage
        if done.status not in (None, "completed"):
            x.error_type = f"response_{done.status}"
        record = msgspec.structs.replace(x.to_record(snap), session_id=self.session_id)
        self.state.recorder.record(record)
        self.state.count(ENDPOINT, 200)
        return await self.state.limiter.charge(s.admission, record)


def _size(data: str | bytes) -> int:
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode())


def _too_large(what: str, limit: int) -> Ending:
    return Ending(1009, "message too big", error_event(
        "frame_too_large", f"a {what} over the gateway's limit of {limit} bytes (realtime_max_frame_bytes) "
        "ended the session", "invalid_request_error"))


def _upstream_closed(closed: ConnectionClosed, limit: int = 0) -> Ending:
    if closed.rcvd is None and closed.sent is not None and closed.sent.code == 1009:
        return _too_large("server event", limit)
    code = closed.rcvd.code if closed.rcvd is not None else 1006
    reason = closed.rcvd.reason if closed.rcvd is not None else ""
    if code == 1000:
        return Ending(1000, reason)
    detail = f"code {code}" + (f": {reason}" if reason else "")
    return Ending(1000, reason, error_event("upstream_closed", f"the upstream closed the session ({detail})"))
