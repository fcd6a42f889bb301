"""Plumbing shared by the fake Anthropic and Gemini upstreams: an aiohttp server on a thread
on 127.0.0.1 that records each request and hands it to the subclass's `answer`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp, wait_for


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    key_header = "x-api-key"

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[Received] = []
        self.port = 0
        self._server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._server = ThreadedApp(self._handle, port=self.port)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        return wait_for(predicate, timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, request.query_string, dict(request.headers), body))
        if request.headers.get(self.key_header) != self.api_key:
            return self.refuse()
        return await self.answer(request, json.loads(body) if body else {})

    def refuse(self) -> web.Response:
        raise NotImplementedError

    async def answer(self, request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        raise NotImplementedError

    async def send_events(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response
