"""A fake OpenAI Realtime API upstream: a `websockets` server on 127.0.0.1, in its own thread.

It checks the provider key (Bearer for /v1/realtime, `api-key` for Azure's /openai/realtime),
sends `session.created`, and answers client events:
- `response.create`: `response.created`, two text deltas, `response.done` with USAGE; what the
  response's `instructions` say changes that: "hang" stops after the first delta (the response
  finishes only when cancelled: `response.cancel` gets a `response.done`, status cancelled,
  with PARTIAL usage), "close:<code>:<reason>" closes the socket with that code, "big:<n>" sends a
  text event of about n bytes instead;
- a binary frame is echoed as binary;
- text that is not JSON is answered with an `error` event, as OpenAI does.
Everything received (raw), every connection's path, query and headers, and the close code the
upstream got from the gateway are kept for the tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

USAGE = {
    "total_tokens": 150,
    "input_tokens": 100,
    "output_tokens": 50,
    "input_token_details": {
        "text_tokens": 40, "audio_tokens": 60, "cached_tokens": 20,
        "cached_tokens_details": {"text_tokens": 20, "audio_tokens": 0},
    },
    "output_token_details": {"text_tokens": 10, "audio_tokens": 40},
}
PARTIAL = {"total_tokens": 30, "input_tokens": 20, "output_tokens": 10,
           "input_token_details": {"text_tokens": 20, "audio_tokens": 0, "cached_tokens": 0},
           "output_token_details": {"text_tokens": 10, "audio_tokens": 0}}


@dataclass
class Conn:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    received: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None  # what the gateway closed this upstream socket with
    close_reason: str = ""
    closed: threading.Event = field(default_factory=threading.Event)
    ponged: threading.Event = field(default_factory=threading.Event)  # the gateway answered a ping


class FakeRealtime:
    def __init__(self, keys: tuple[str, ...] = ("sk-rt",)) -> None:
        self.keys = keys
        self.conns: list[Conn] = []
        self.refused: list[str] = []  # keys refused at the handshake
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self.hanging: dict[int, str] = {}  # connection -> the response left unfinished ("hang")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeRealtime:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("fake realtime upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            server = self._server

            async def close() -> None:
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()

        async def start() -> None:
            self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._check,
                                       max_size=None, compression=None)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        key = _key(request.headers, azure=path.startswith("/openai/"))
        if key not in self.keys:
            self.refused.append(key)
            return conn.respond(401, json.dumps({"error": {"message": "Incorrect API key provided"}}))
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        conn = Conn(url.path, parse_qs(url.query), {k.lower(): v for k, v in ws.request.headers.raw_items()})
        self.conns.append(conn)
        await ws.send(self._event("session.created", session={"id": f"sess_{next(self._ids)}"}))
        pinger = asyncio.ensure_future(self._ping(ws, conn))
        try:
            async for message in ws:
                conn.received.append(message)
                if isinstance(message, bytes):
                    await ws.send(message)
                    continue
                await self._answer(ws, message)
        except ConnectionClosed:
            pass
        finally:
            pinger.cancel()
            rcvd = ws.protocol.close_rcvd
            conn.close_code = rcvd.code if rcvd is not None else 1006
            conn.close_reason = rcvd.reason if rcvd is not None else ""
            conn.closed.set()

    async def _ping(self, ws: ServerConnection, conn: Conn) -> None:
        """The upstream pings the gateway once: its WebSocket client must answer."""
        pong = await ws.ping()
        await pong
        conn.ponged.set()

    async def _answer(self, ws: ServerConnection, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            await ws.send(self._event("error", error={
                "type": "invalid_request_error", "code": "invalid_json",
                "message": "We could not parse the JSON body of your request.", "param": None,
            }))
            return
        if event.get("type") == "response.cancel" and self.hanging.get(id(ws)):
            rid = self.hanging.pop(id(ws))
            await ws.send(self._event("response.done", response={
                "object": "realtime.response", "id": rid, "status": "cancelled", "output": [],
                "usage": PARTIAL}))
            return
        if event.get("type") != "response.create":
            return
        what = str((event.get("response") or {}).get("instructions") or "")
        rid = f"resp_{next(self._ids)}"
        if what.startswith("close:"):
            _, code, reason = what.split(":", 2)
            await ws.close(int(code), reason)
            return
        if what.startswith("big:"):
            await ws.send(self._event("response.output_text.delta", delta="x" * int(what[4:])))
            return
        await ws.send(self._event("response.created", response={"id": rid, "status": "in_progress"}))
        await ws.send(self._event("response.output_text.delta", response_id=rid, delta="Hello"))
        if what == "hang":
            self.hanging[id(ws)] = rid
            return
        await ws.send(self._event("response.output_text.delta", response_id=rid, delta=" there"))
        await ws.send(self._event("response.done", response={
            "object": "realtime.response", "id": rid, "status": "completed", "output": [], "usage": USAGE,
        }))

    def _event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, "event_id": f"event_{next(self._ids)}", **fields})


def _key(headers: Headers, *, azure: bool) -> str:
    if azure:
        return str(headers.get("api-key") or "")
    auth = str(headers.get("authorization") or "")
    return auth.removeprefix("Bearer ")
