"""WebSocket connections of the native server, behind granian's RSGI WebSocket interface (what
gateway/server/realtime/ was written for): the connection drives a `WsSession` once it has parsed an
upgrade request's head; the app gets `WsProto`, then from `accept()` a `WsTransport`.

The handshake's checks, frames, pings and the closing handshake are the `websockets` library's
sans-I/O protocol, and reassembling fragmented messages is its `Assembler`: this module moves bytes
between them, the transport and the app, and keeps granian's behaviour where the app can see it."""

from __future__ import annotations

import asyncio
from typing import Any

from granian._granian import RSGIProtocolClosed, RSGIProtocolError
from websockets.asyncio.messages import Assembler
from websockets.datastructures import Headers
from websockets.exceptions import ConcurrencyError, TooManyFragments
from websockets.frames import DATA_OPCODES, CloseCode, Frame
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from .head import render_head

__all__ = ["MAX_SIZE", "WsMessage", "WsProto", "WsSession", "WsTransport"]

MAX_SIZE = 16 * 2**20  # of a message, fragments included (granian's tungstenite: 16 MiB a frame)
CLOSE_TIMEOUT = 2.0  # for the client's close frame once the app is done
# Frames received but not yet read by the app: past HIGH the socket is not read until LOW.
QUEUE_HIGH, QUEUE_LOW = 16, 4


class WsMessage:
    """What `receive()` returns: `kind` 0 the client closed, 1 bytes, 2 text (granian's)."""

    __slots__ = ("data", "kind")

    def __init__(self, kind: int, data: bytes | str | None) -> None:
        self.kind, self.data = kind, data


CLOSED = WsMessage(0, None)


class WsSession:
    """One upgraded connection, from its request head to the transport's close."""

    def __init__(self, transport: asyncio.Transport, scope: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.scope, self.loop = transport, scope, loop
        self.proto = WsProto(self)
        # Built OPEN: the handshake is answered from the scope (accept()), not parsed again.
        self.protocol = ServerProtocol(state=OPEN, max_size=MAX_SIZE)
        self.messages = Assembler(QUEUE_HIGH, QUEUE_LOW, pause=self._pause_reading,
                                  resume=self._resume_reading)
        self.stage = "new"  # -> "open" (accepted) or "refused" (an HTTP answer was sent, or none can be)
        self.gone = False  # the connection is lost
        self.ended: asyncio.Future[None] = loop.create_future()  # the transport is closed or lost
        self._writable: asyncio.Future[None] | None = None  # while the write buffer is full
        self._early = bytearray()  # frames that came before accept()
        # The answer to the client's close frame waits for the app (granian's order): a client
        # that closed then sees the session's end after its accounting (a prepaid key's next
        # session must find the last one settled).
        self._held: list[bytes] = []
        self._app_done = False

    # -- driven by the connection ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.gone or self.stage != "open":
            if self.stage == "new":
                self._early += data
                if len(self._early) > MAX_SIZE:  # a client flooding before the upgrade is accepted
                    self.transport.abort()
            return
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()  # pongs, the close frame's echo
        for event in events:
            if isinstance(event, Frame) and event.opcode in DATA_OPCODES and not self.messages.closed:
                self.messages.put(event)
        if protocol.eof_sent:  # a close frame came, or the protocol failed: no more messages
            self.messages.close()

    def lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.protocol.receive_eof()  # idempotent; the state becomes CLOSED
        self.protocol.data_to_send()  # nowhere to write it
        self.messages.close()
        self._wake_writers()
        self._ended()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    async def finish(self) -> None:
        """The app returned: granian's 403 if it neither accepted nor refused, else the closing
        handshake (close 1000), the transport closed once the client answers or after 2 s."""
        if self.stage == "new":
            self.refuse(403)
            return
        if self.stage != "open":
            return
        self._app_done = True
        self._flush()  # the held answer to the client's close frame, if there is one
        self.start_closing()
        # The app reads no more: drop its messages and read on to the client's close frame.
        self.messages.close()
        self._resume_reading()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self.ended)
        except TimeoutError:
            self.transport.abort()

    # -- for WsProto and WsTransport ---------------------------------------------------------
    def refuse(self, status: int) -> None:
        """An HTTP answer without a body instead of the upgrade, then close (granian's refusal)."""
        self.stage = "refused"
        if not 200 <= status <= 599:
            status = 403
        if not self.gone:
            self.transport.write(render_head(status, [], 0, True))  # content-length: 0, close
        self._close_transport()

    def start_closing(self) -> None:
        if not self.gone and self.protocol.state is OPEN:
            self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()

    async def send(self, data: bytes, text: bool) -> None:
        """One message, whole; returns once the write buffer is below its high-water mark."""
        if self.gone or self.protocol.state is not OPEN:
            raise RSGIProtocolClosed("the WebSocket is closed")
        (self.protocol.send_text if text else self.protocol.send_binary)(data)
        self._flush()
        while self._writable is not None:  # the write buffer is full: wait for it to drain
            await asyncio.shield(self._writable)  # shared by every waiting sender
        if self.gone:
            raise RSGIProtocolClosed("the WebSocket is closed")

    def fail(self, code: int, reason: str) -> None:
        if not self.gone:
            self.protocol.fail(code, reason)
            self._flush()

    # -- internals ---------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.protocol.data_to_send()
        if self.protocol.close_rcvd is not None and not self._app_done:
            self._held += out
            return
        if self._held:
            out, self._held = self._held + out, []
        for data in out:
            if data:
                self.transport.write(data)
            else:  # the library's end of stream: a server closes the TCP connection first (RFC 6455 7.1.1)
                self._close_transport()

    def _close_transport(self) -> None:
        self.transport.close()
        self._ended()

    def _ended(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def _wake_writers(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _pause_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()


class WsProto:
    """The `protocol` argument of a WebSocket upgrade: accept it, or refuse it with an HTTP status."""

    __slots__ = ("_s",)

    def __init__(self, session: WsSession) -> None:
        self._s = session

    async def accept(self) -> WsTransport:
        s = self._s
        if s.stage != "new":
            raise RSGIProtocolError("the upgrade was already accepted or refused")
        if s.gone or s.transport.is_closing():
            s.stage = "refused"
            raise RSGIProtocolError("the client left before the upgrade")
        scope = s.scope
        target = scope.path + (f"?{scope.query_string}" if scope.query_string else "")
        request = Request(target, Headers(scope.headers.items()), method=scope.method,
                          protocol=f"HTTP/{getattr(scope, 'http_version', '1.1')}")
        response = s.protocol.accept(request)  # checks the key, the version, the method...
        if response.status_code != 101:
            s.stage = "refused"
            response.headers["Sec-WebSocket-Version"] = "13"  # RFC 6455 4.2.2: the version understood
            s.transport.write(response.serialize())
            s._close_transport()
            raise RSGIProtocolError(f"invalid WebSocket handshake: {s.protocol.handshake_exc}")
        s.stage = "open"
        s.transport.write(response.serialize())
        early, s._early = bytes(s._early), bytearray()
        if early:
            s.feed(early)
        return WsTransport(s)

    def close(self, status: int | None = None) -> None:
        """Before accept: refuse with `status` (403 by default). After: close the WebSocket (code
        1000), the status ignored as granian does; the connection's finish() waits for the end."""
        s = self._s
        if s.stage == "new":
            s.refuse(status or 403)
        elif s.stage == "open":
            s.start_closing()


class WsTransport:
    """An accepted WebSocket, as the app sees it."""

    __slots__ = ("_s",)

    def __init__(self, session: WsSession) -> None:
        self._s = session

    async def receive(self) -> WsMessage:
        """The next message; kind 0 once the client closed. A connection lost without a close frame
        raises RSGIProtocolClosed, as granian does."""
        s = self._s
        try:
            data = await s.messages.get()
        except EOFError:
            if s.protocol.close_rcvd is not None:
                return CLOSED
            raise RSGIProtocolClosed("the WebSocket connection was lost") from None
        except ConcurrencyError:
            raise RSGIProtocolError("receive() is already running") from None
        except UnicodeDecodeError as exc:
            s.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            raise RSGIProtocolClosed("invalid UTF-8 in a text message") from exc
        except TooManyFragments as exc:
            s.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
            raise RSGIProtocolClosed("too many fragments") from exc
        return WsMessage(2, data) if isinstance(data, str) else WsMessage(1, data)

    async def send_bytes(self, data: bytes) -> None:
        await self._s.send(data, text=False)

    async def send_str(self, data: str) -> None:
        await self._s.send(data.encode(), text=True)
