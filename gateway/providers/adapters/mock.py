"""The built-in mock provider: a deterministic fake LLM answered in-process (no network).

It lets the default bundle answer requests with no credentials, streaming included, and reports
usage like OpenAI does so that the ledger prices mock traffic too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from ...config.types import MockProvider
from ..transport.base import UpstreamClient
from .base import UpstreamCall


class _Options(msgspec.Struct):
    include_usage: bool = False


class _Body(msgspec.Struct):
    stream_options: _Options | None = None
    input: Any = None
    prompt: Any = None


class MockResponse:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        chunks: list[bytes] | None = None,
        delay_s: float = 0.0,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {"content-type": content_type}
        self._body = body
        self._chunks = chunks
        self._delay = delay_s

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks or [self._body]):
            if i and self._delay:
                await asyncio.sleep(self._delay)
            yield chunk

    async def aclose(self) -> None:
        return None


class MockAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> MockResponse:
        spec = call.provider.spec
        assert isinstance(spec, MockProvider)
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000)
        try:
            body = msgspec.json.decode(call.body, type=_Body) if call.body else _Body()
        except msgspec.DecodeError:
            body = _Body()
        prompt_tokens = max(1, len(call.body) // 4)
        if call.endpoint == "chat/completions":
            return _chat(call, spec, body, prompt_tokens)
        if call.endpoint == "completions":
            return _completion(call, spec, prompt_tokens)
        if call.endpoint == "embeddings":
            return _embeddings(call, body, prompt_tokens)
        error = {
            "error": {
                "message": f"the mock provider does not implement /v1/{call.endpoint}",
                "type": "invalid_request_error",
                "code": "unsupported_endpoint",
            }
        }
        return MockResponse(404, msgspec.json.encode(error))


def _words(spec: MockProvider, model: str) -> list[str]:
    text = spec.reply or f"Hello from {model}! This is a reply from Tollgate's mock provider."
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat(call: UpstreamCall, spec: MockProvider, body: _Body, prompt: int) -> MockResponse:
    words = _words(spec, call.model)
    created = int(time.time())
    rid = "chatcmpl-mock-" + hashlib.sha256(call.body).hexdigest()[:16]
    if not call.stream:
        message = {"role": "assistant", "content": "".join(words)}
        doc = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": call.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _usage(prompt, len(words)),
        }
        return MockResponse(200, msgspec.json.encode(doc))
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": call.model}
    events = []
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
        events.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if body.stream_options and body.stream_options.include_usage:
        events.append({**base, "choices": [], "usage": _usage(prompt, len(words))})
    chunks = [b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    return MockResponse(
        200, chunks=chunks, delay_s=spec.chunk_delay_ms / 1000, content_type="text/event-stream"
    )


def _completion(call: UpstreamCall, spec: MockProvider, prompt: int) -> MockResponse:
    words = _words(spec, call.model)
    doc = {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [{"index": 0, "text": "".join(words), "finish_reason": "stop"}],
        "usage": _usage(prompt, len(words)),
    }
    return MockResponse(200, msgspec.json.encode(doc))


def _embeddings(call: UpstreamCall, body: _Body, prompt: int) -> MockResponse:
    inputs = body.input if isinstance(body.input, list) else [body.input or ""]
    data = []
    for i, item in enumerate(inputs):
        digest = hashlib.sha256(str(item).encode()).digest()
        vector = [round(b / 255 - 0.5, 6) for b in digest[:8]]
        data.append({"object": "embedding", "index": i, "embedding": vector})
    doc = {
        "object": "list",
        "model": call.model,
        "data": data,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }
    return MockResponse(200, msgspec.json.encode(doc))
