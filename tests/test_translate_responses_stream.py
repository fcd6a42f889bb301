"""Responses API stream events built from chat chunks as they arrive (tests/fixtures SSE), from an
OpenAI-compatible upstream and through the Anthropic translator; errors end with response.failed."""

from __future__ import annotations

import json
from typing import Any

from gateway.core.usage import TokenUsage
from gateway.providers.codecs import codec_for
from tests.test_translate_native import events, fixture, out, run

REQUEST = {"model": "m", "input": "weather?", "stream": True,
           "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}
TOOL_STREAM = [
    "response.created", "response.in_progress",
    "response.output_item.added", "response.content_part.added", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    "response.output_item.added", "response.function_call_arguments.delta",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.output_item.done", "response.completed"]


def _tap(kind: str) -> Any:
    return codec_for("openai", kind, "responses").stream(out(REQUEST, endpoint="responses", stream=True,
                                                             usage=False))


def _names(blob: bytes) -> list[str]:
    return [line[7:].decode() for line in blob.split(b"\n") if line.startswith(b"event: ")]


def test_openai_compatible_stream_becomes_responses_events() -> None:
    tap = _tap("openai-compatible")
    outputs = run(tap, fixture("openai_stream_tool.sse"), step=13)
    blob = b"".join(outputs)
    docs = events(blob)
    assert [d["type"] for d in docs] == TOOL_STREAM == _names(blob)
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    deltas = [d for d in docs if d["type"] == "response.output_text.delta"]
    assert deltas[0]["delta"] == "Let me check." and deltas[0]["output_index"] == 0
    added = [d for d in docs if d["type"] == "response.output_item.added"]
    assert added[1]["output_index"] == 1 and added[1]["item"]["call_id"] == "call_abc"
    assert added[1]["item"]["name"] == "get_weather" and added[1]["item"]["status"] == "in_progress"
    args = "".join(d["delta"] for d in docs if d["type"] == "response.function_call_arguments.delta")
    done = next(d for d in docs if d["type"] == "response.function_call_arguments.done")
    assert json.loads(args) == json.loads(done["arguments"]) == {"city": "Paris"}
    final = docs[-1]["response"]
    assert final["status"] == "completed" and final["id"] == "resp_chatcmpl-9"
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Let me check."
    assert final["usage"] == {"input_tokens": 80, "output_tokens": 20, "total_tokens": 100,
                              "input_tokens_details": {"cached_tokens": 64},
                              "output_tokens_details": {"reasoning_tokens": 0}}
    assert tap.usage == TokenUsage(prompt_tokens=80, completion_tokens=20, cached_tokens=64)
    assert tap.error is None


def test_events_go_out_as_chunks_arrive() -> None:
    """No whole-response buffering: the text delta leaves with the chunk that carried it."""
    tap = _tap("openai-compatible")
    chunks = [e + b"\n\n" for e in fixture("openai_stream_tool.sse").split(b"\n\n") if e.strip()]
    first = tap.feed(chunks[0]) + tap.feed(chunks[1])
    assert _names(first)[-1] == "response.output_text.delta" and b"Let me check." in first
    tap.feed(chunks[2])
    assert b"response.function_call_arguments.delta" in tap.feed(chunks[3])


def test_anthropic_stream_reaches_responses_clients() -> None:
    tap = _tap("anthropic")
    docs = events(b"".join(run(tap, fixture("anthropic_stream_tool.sse"), step=29)))
    kinds = [d["type"] for d in docs]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    args = "".join(d["delta"] for d in docs if d["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris"}
    final = docs[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["name"] == "get_weather"
    # Anthropic's input excludes cache reads; the chat convention (and the ledger) includes them
    assert tap.usage == TokenUsage(prompt_tokens=1610, completion_tokens=89, cached_tokens=1200)
    assert final["usage"]["input_tokens"] == 1610 and final["usage"]["output_tokens"] == 89


def test_length_stop_ends_with_response_incomplete() -> None:
    tap = _tap("openai-compatible")
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    stop = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    data = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in (chunk, stop)) + b"data: [DONE]\n\n"
    docs = events(b"".join(run(tap, data)))
    assert docs[-1]["type"] == "response.incomplete"
    assert docs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_upstream_error_mid_stream_ends_with_response_failed() -> None:
    tap = _tap("openai-compatible")
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    error = {"error": {"message": "upstream overloaded", "type": "server_error"}}
    data = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in (chunk, error))
    docs = events(b"".join(run(tap, data)))
    assert docs[-1]["type"] == "response.failed"
    assert docs[-1]["response"]["error"] == {"code": "server_error", "message": "upstream overloaded"}
    assert tap.error == "upstream_stream_error:server_error"


def test_empty_stream_still_completes() -> None:
    tap = _tap("openai-compatible")
    docs = events(b"".join(run(tap, b"data: [DONE]\n\n")))
    assert [d["type"] for d in docs] == ["response.created", "response.in_progress", "response.completed"]
