"""A webhook receiver on 127.0.0.1 that records every delivery (headers and raw body) and can be
told to answer with a status or to take its time, to test alert delivery and its retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp, wait_for


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str, header: str = "x-tollgate-signature") -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get(header, ""), expected)


@dataclass
class WebhookReceiver:
    status: int = 200
    delay: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0  # every request, answered or not
    port: int = 0
    _server: ThreadedApp | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        self._server = ThreadedApp(self._handle, cancel_on_disconnect=True)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def reset(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay
        self.deliveries.clear()
        self.attempts = 0

    def events(self, name: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.headers.get("x-tollgate-event") == name]

    def wait_for_event(self, name: str, timeout: float = 10.0) -> Delivery:
        if not wait_for(lambda: self.events(name), timeout):
            got = [d.headers.get("x-tollgate-event") for d in self.deliveries]
            raise AssertionError(f"no {name} alert within {timeout}s (got {got})")
        return self.events(name)[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status < 300:
            headers = {k.lower(): v for k, v in request.headers.items()}  # as sent: any case
            self.deliveries.append(Delivery(request.path, headers, body))
        return web.json_response({"ok": self.status < 300}, status=self.status)
