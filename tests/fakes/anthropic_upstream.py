"""A fake Anthropic Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) on loopback.

It answers with a tool call when the request offers tools and its last turn is not a tool
result, else with text (echoing a tool result when there is one); streamed answers follow the
real event sequence (message_start, content_block_*, ping, message_delta, message_stop).
Usage: 20 uncached input tokens, 5 cache reads, 3 cache writes, 7 output tokens.
count_tokens answers `{"input_tokens": COUNT}` (or fails with `count_status` when it is not 200).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.native_base import FakeServer

USAGE = {"input_tokens": 20, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 7}
COUNT = 4242


def _event(kind: str, doc: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **doc})}\n\n".encode()


def _tool_result(doc: dict[str, Any]) -> str | None:
    last = (doc.get("messages") or [{}])[-1]
    content = last.get("content")
    if isinstance(content, list):
        for block in content:
            if block.get("type") == "tool_result":
                inner = block.get("content")
                return inner if isinstance(inner, str) else json.dumps(inner)
    return None


class FakeAnthropic(FakeServer):
    key_header = "x-api-key"
    count_status = 200

    def count_tokens(self, doc: dict[str, Any]) -> web.Response:
        if self.count_status != 200:
            return web.json_response({"type": "error", "error": {"type": "api_error", "message": "count failed"}},
                                     status=self.count_status)
        if not doc.get("model") or not isinstance(doc.get("messages"), list):
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "model and messages required"}}, status=400)
        return web.json_response({"input_tokens": COUNT})

    def refuse(self) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": "authentication_error",
                                                            "message": "invalid x-api-key"}}, status=401)

    async def answer(self, request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        if request.path == "/v1/messages/count_tokens" and request.headers.get("anthropic-version"):
            return self.count_tokens(doc)
        if request.path != "/v1/messages" or not request.headers.get("anthropic-version"):
            return web.json_response({"type": "error", "error": {"type": "not_found_error",
                                                                "message": "bad path"}}, status=404)
        model = doc["model"]
        result = _tool_result(doc)
        tool = (doc.get("tools") or [{}])[0].get("name") if doc.get("tools") and result is None else None
        text = f"tool said: {result}" if result is not None else f"fake answer from {model}"
        if not doc.get("stream"):
            content = ([{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"city": "Paris"}}]
                       if tool else [{"type": "text", "text": text}])
            return web.json_response({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": "tool_use" if tool else "end_turn",
                "stop_sequence": None, "usage": USAGE})
        start = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
                 "stop_reason": None, "stop_sequence": None, "usage": {**USAGE, "output_tokens": 1}}
        events = [_event("message_start", {"message": start}), _event("ping", {})]
        if tool:
            events.append(_event("content_block_start", {"index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}}))
            for part in ('{"city": ', '"Paris"}'):
                events.append(_event("content_block_delta", {"index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": part}}))
        else:
            events.append(_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
            for word in text.split(" "):
                events.append(_event("content_block_delta", {"index": 0, "delta": {
                    "type": "text_delta", "text": word + " "}}))
        events.append(_event("content_block_stop", {"index": 0}))
        events.append(_event("message_delta", {"delta": {"stop_reason": "tool_use" if tool else "end_turn",
                                                         "stop_sequence": None}, "usage": {"output_tokens": 7}}))
        events.append(_event("message_stop", {}))
        return await self.send_events(request, events)
