"""A fake OpenAI-compatible upstream on 127.0.0.1 that records what it received.

Behaviour is scripted per upstream model name: status, body, latency, streamed chunks, or
hanging until the client goes away (to prove cancellation).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
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


@dataclass
class Script:
    status: int = 200
    body: Any = None  # a dict (JSON) or bytes; None = a normal completion
    delay: float = 0.0
    chunks: list[str] | None = None  # streamed contents; None = default words
    chunk_delay: float = 0.0
    usage: bool = True  # send the usage chunk when asked
    hang: bool = False  # never answer; record when the client disconnects
    cut_after: int | None = None  # drop the connection after this many chunks
    error_after: int | None = None  # send an error event after this many chunks, then end
    times: int | None = None  # apply this script N times, then fall back to default
    events: list[dict[str, Any]] | None = None  # a stream: these chunks as sent, then [DONE]


@dataclass
class FakeUpstream:
    name: str = "fake"
    scripts: dict[str, Script] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    reject_keys: set[str] = field(default_factory=set)  # answer 401 to these api keys
    port: int = 0
    _server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, **kwargs: Any) -> None:
        self.scripts[model] = Script(**kwargs)

    def reset(self) -> None:
        self.scripts.clear()
        self.received.clear()
        self.disconnects.clear()
        self.reject_keys.clear()

    def start(self) -> FakeUpstream:
        self._server = ThreadedApp(self._handle, port=self.port, cancel_on_disconnect=True)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        return wait_for(predicate, timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, request.query_string,
                                      dict(request.headers), body))
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if presented in self.reject_keys:
            return web.json_response({"error": {"message": f"Incorrect API key provided: {presented}",
                                                "type": "invalid_request_error"}}, status=401)
        doc: dict[str, Any] = {}
        if body and request.content_type == "application/json":
            doc = json.loads(body)
        model = str(doc.get("model", ""))
        if request.content_type.startswith("multipart/"):
            found = re.search(rb'name="model"\r\n\r\n([^\r]*)\r\n', body)
            model = found.group(1).decode() if found else ""
        script = self._take(model)
        if script.hang:
            try:
                await asyncio.sleep(3600)
            finally:
                self.disconnects.append(model)
        if script.delay:
            await asyncio.sleep(script.delay)
        if script.status != 200 or script.body is not None:
            return _json_or_bytes(script)
        if doc.get("stream") and script.events is not None:
            return await self._events(request, script.events)
        if doc.get("stream"):
            return await self._stream(request, doc, script)
        if request.path.endswith("/embeddings"):
            return web.json_response(_embeddings(model, doc))
        return web.json_response(_completion(model, request.path))

    def _take(self, model: str) -> Script:
        script = self.scripts.get(model)
        if script is None:
            return Script()
        if script.times is not None:
            script.times -= 1
            if script.times <= 0:
                del self.scripts[model]
        return script

    async def _events(self, request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _stream(self, request: web.Request, doc: dict[str, Any], s: Script) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        model = doc["model"]
        words = s.chunks or ["Hello", " from", " the", " fake", " upstream."]
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model}
        try:
            for i, word in enumerate(words):
                if s.cut_after is not None and i >= s.cut_after:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                if s.error_after is not None and i >= s.error_after:
                    error = {"error": {"message": "upstream overloaded", "type": "server_error"}}
                    await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                    return response
                event = {**base, "choices": [{"index": 0, "delta": {"content": word},
                                              "finish_reason": None}]}
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                if s.chunk_delay:
                    await asyncio.sleep(s.chunk_delay)
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            await response.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            wants = (doc.get("stream_options") or {}).get("include_usage")
            if wants and s.usage:
                usage = {**base, "choices": [], "usage": {
                    "prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words),
                    "prompt_tokens_details": {"cached_tokens": 3}}}
                await response.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(model)
            raise
        return response


def _json_or_bytes(s: Script) -> web.Response:
    if isinstance(s.body, bytes):
        return web.Response(status=s.status, body=s.body)
    body = s.body if s.body is not None else {
        "error": {"message": f"scripted failure {s.status}", "type": "server_error", "code": None}}
    return web.json_response(body, status=s.status)


def _completion(model: str, path: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
             "prompt_tokens_details": {"cached_tokens": 4}}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"fake answer from {model}"}}],
            "usage": usage}


def _embeddings(model: str, doc: dict[str, Any]) -> dict[str, Any]:
    """One vector per input, listed last to first (clients order them by `index`): input i gets
    [0.1 + i, 0.2, 0.3], or `dimensions` values from 0.1 + i up in steps of 0.5."""
    inputs = doc.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
    dims = doc.get("dimensions")

    def vector(i: int) -> list[float]:
        return [0.1 + i + 0.5 * k for k in range(dims)] if dims else [0.1 + i, 0.2, 0.3]

    data = [{"object": "embedding", "index": i, "embedding": vector(i)} for i in reversed(range(count))]
    return {"object": "list", "model": model, "usage": {"prompt_tokens": 6, "total_tokens": 6}, "data": data}
