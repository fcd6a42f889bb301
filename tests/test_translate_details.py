"""Translation details beyond the basic directions (tests/test_translate_native.py): Gemini thought
signatures carried through other families' tool call ids, reasoning text from OpenAI-compatible
upstreams as Anthropic thinking blocks and Gemini thought parts, function calls released to
Gemini clients as soon as they are complete, Anthropic's default max_tokens on the pass-through,
and Gemini's JSON-array stream shape."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from gateway.config.snapshot import ProviderRuntime
from gateway.config.types import AnthropicProvider, Timeouts
from gateway.core.usage import TokenUsage
from gateway.providers.codecs import codec_for
from gateway.providers.translate.codec import Outgoing
from gateway.providers.wire.gemini import SIGNATURE_MARK
from gateway.server.gemini_array import ArrayTransport
from tests.test_translate_native import events, fixture, out, request, run

SIGNED = "CpcBAb4+9vv/Ex0t+ac/Lw=="  # in gemini_response_signed_search.json
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def _sse_events(name: str) -> list[bytes]:
    return [e + b"\n\n" for e in fixture(name).split(b"\n\n") if e.strip()]


# -- Gemini thought signatures ---------------------------------------------------------------

def test_signature_rides_in_openai_tool_call_id_and_comes_back() -> None:
    codec = codec_for("openai", "gemini")
    body, usage = codec.response(fixture("gemini_response_signed_search.json"), out({}))
    call = json.loads(body)["choices"][0]["message"]["tool_calls"][0]
    assert SIGNATURE_MARK in call["id"] and ANTHROPIC_ID.match(call["id"])
    # tool-use prompt tokens (search results) are input the upstream bills; thoughts are output
    assert usage == TokenUsage(prompt_tokens=400, completion_tokens=70, reasoning_tokens=50)
    chat = {"model": "m", "messages": [{"role": "user", "content": "weather?"},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]}
    _, doc = request(codec, chat)
    model_turn, result = doc["contents"][1], doc["contents"][2]
    assert model_turn["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                    "thoughtSignature": SIGNED}]
    assert result["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_signature_rides_in_anthropic_tool_use_id_and_comes_back() -> None:
    codec = codec_for("anthropic", "gemini")
    body, _ = codec.response(fixture("gemini_response_signed_search.json"), out({}, endpoint="messages"))
    use = json.loads(body)["content"][0]
    assert use["type"] == "tool_use" and ANTHROPIC_ID.match(use["id"])
    messages = [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [use]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]}]
    _, doc = request(codec, {"model": "m", "max_tokens": 9, "messages": messages}, endpoint="messages")
    assert doc["contents"][1]["parts"][0]["thoughtSignature"] == SIGNED


def test_generated_call_ids_are_unique_across_answers() -> None:
    codec = codec_for("openai", "gemini")
    answer = json.loads(fixture("gemini_response.json"))  # a call without id or signature
    ids = {json.loads(codec.response(json.dumps(answer).encode(), out({}))[0])["choices"][0]["message"]
           ["tool_calls"][0]["id"] for _ in range(3)}
    assert len(ids) == 3


# -- reasoning text from OpenAI-compatible upstreams -----------------------------------------

def test_reasoning_stream_to_anthropic_thinking_block() -> None:
    tap = codec_for("anthropic", "openai").stream(out({}, endpoint="messages", stream=True))
    blob = b"".join(run(tap, fixture("openai_stream_reasoning_tools.sse"), step=17))
    docs = events(blob)
    starts = [d["content_block"] for d in docs if d["type"] == "content_block_start"]
    assert starts[0] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [s["type"] for s in starts] == ["thinking", "tool_use", "tool_use"]
    thinking = "".join(d["delta"].get("thinking", "") for d in docs if d["type"] == "content_block_delta")
    assert thinking == "Two cities, two calls."
    args = [d["delta"]["partial_json"] for d in docs if d["type"] == "content_block_delta" and d["index"] == 2]
    assert json.loads("".join(args)) == {"city": "Rome"}
    end = next(d for d in docs if d["type"] == "message_delta")
    assert end["delta"]["stop_reason"] == "tool_use"
    assert end["usage"] == {"input_tokens": 8, "output_tokens": 30, "cache_read_input_tokens": 32,
                            "cache_creation_input_tokens": 0}


def test_reasoning_answer_to_anthropic_and_gemini() -> None:
    body, usage = codec_for("anthropic", "openai").response(fixture("openai_completion_reasoning.json"),
                                                            out({}, endpoint="messages"))
    content = json.loads(body)["content"]
    assert content == [{"type": "thinking", "thinking": "Simple greeting.", "signature": ""},
                       {"type": "text", "text": "Hello!"}]
    assert usage is not None and usage.reasoning_tokens == 10
    body, _ = codec_for("gemini", "openai").response(fixture("openai_completion_reasoning.json"),
                                                     out({}, endpoint="generateContent"))
    parts = json.loads(body)["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Simple greeting.", "thought": True}, {"text": "Hello!"}]


def test_gemini_client_gets_thoughts_at_once_and_each_call_when_complete() -> None:
    tap = codec_for("gemini", "openai").stream(out({}, endpoint="generateContent", stream=True))
    outputs = [events(tap.feed(e)) for e in _sse_events("openai_stream_reasoning_tools.sse")]
    parts = [[p for d in batch for p in d["candidates"][0]["content"]["parts"]] for batch in outputs]
    assert parts[1] == [{"text": "Two cities, ", "thought": True}]  # out with its upstream event
    assert parts[4] == []  # Paris's arguments are not known to be complete yet
    assert parts[5] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]  # Rome started
    last = outputs[-1]  # on [DONE]: the last call, the finish reason and the usage
    assert tap.flush() == b""
    assert last[-1]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
    assert last[-1]["candidates"][0]["finishReason"] == "STOP"
    assert last[-1]["usageMetadata"] == {"promptTokenCount": 40, "candidatesTokenCount": 18,
                                         "cachedContentTokenCount": 32, "thoughtsTokenCount": 12,
                                         "totalTokenCount": 70}


# -- Anthropic pass-through ------------------------------------------------------------------

def _anthropic_provider(default: int) -> ProviderRuntime:
    spec = AnthropicProvider(id="an", default_max_tokens=default)
    return ProviderRuntime("an", "anthropic", "http://x", (), frozenset(), 0, 1, Timeouts(), (), {}, spec)


def test_anthropic_passthrough_adds_default_max_tokens_only_when_missing() -> None:
    codec, provider = codec_for("anthropic", "anthropic"), _anthropic_provider(321)
    body = {"model": "client-model", "messages": [{"role": "user", "content": "hi"}], "x_unknown": [1]}
    _, doc = request(codec, body, endpoint="messages", provider=provider)
    assert doc == {**body, "model": "up-model", "max_tokens": 321}
    given = json.dumps({"model": "same", "max_tokens": 5, "messages": []}).encode()
    unchanged = Outgoing("messages", given, "same", "same", False, False, provider=provider)
    assert codec.request(unchanged)[1] is given  # same model and a max_tokens: the bytes as sent


# -- Gemini's JSON-array stream ----------------------------------------------------------------

class _Inner:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


def test_array_transport_turns_sse_into_a_streamed_json_array() -> None:
    async def go(data: bytes) -> list[bytes]:
        inner = _Inner()
        array = ArrayTransport(inner)
        for i in range(0, len(data), 9):
            await array.send_bytes(data[i:i + 9])
        await array.close()
        return inner.sent

    sent = asyncio.run(go(fixture("gemini_stream_tool.sse")))
    assert sent[0].startswith(b"[{") and len(sent) == 4  # one write per element, then the closing bracket
    docs: list[Any] = json.loads(b"".join(sent))
    assert [d["responseId"] for d in docs] == ["r-1"] * 3
    assert json.loads(b"".join(asyncio.run(go(b"")))) == []


# -- an upstream error in the middle of a stream ----------------------------------------------

def test_stream_error_reaches_anthropic_client_as_an_error_event() -> None:
    tap = codec_for("anthropic", "openai").stream(out({}, endpoint="messages", stream=True))
    head = _sse_events("openai_stream_tool.sse")[:2]
    error = b'data: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n'
    blob = b"".join(tap.feed(e) for e in [*head, error]) + tap.flush()
    names = [line[7:] for line in blob.split(b"\n") if line.startswith(b"event: ")]
    assert names[-1] == b"error" and b"message_stop" not in names
    assert events(blob)[-1] == {"type": "error", "error": {"type": "api_error", "message": "upstream overloaded"}}


def test_anthropic_overload_mid_stream_reaches_gemini_client_as_an_error_chunk() -> None:
    tap = codec_for("gemini", "anthropic").stream(out({}, endpoint="generateContent", stream=True))
    head = b"".join(_sse_events("anthropic_stream_tool.sse")[:8])  # up to the text delta
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    docs = events(b"".join(run(tap, head + error)))
    assert docs[0]["candidates"][0]["content"]["parts"] == [{"text": "Need the weather.", "thought": True}]
    assert docs[-1] == {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}


def test_gemini_error_chunk_reaches_openai_client() -> None:
    tap = codec_for("openai", "gemini").stream(out({}, stream=True))
    error = b'data: {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}\r\n\r\n'
    docs = events(b"".join(run(tap, _sse_events("gemini_stream_tool.sse")[0] + error)))
    assert docs[-1] == {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}


def test_every_tap_names_the_upstream_stream_error_for_the_usage_row() -> None:
    anthropic_error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}\n\n'
    gemini_error = b'data: {"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}}\r\n\r\n'
    chat_error = b'data: {"error": {"message": "x", "type": "server_error"}}\n\n'
    cases = [("anthropic", "anthropic", "messages", anthropic_error, "overloaded_error"),
             ("openai", "anthropic", "chat/completions", anthropic_error, "overloaded_error"),
             ("gemini", "anthropic", "generateContent", anthropic_error, "overloaded_error"),
             ("gemini", "gemini", "generateContent", gemini_error, "UNAVAILABLE"),
             ("openai", "gemini", "chat/completions", gemini_error, "UNAVAILABLE"),
             ("anthropic", "gemini", "messages", gemini_error, "UNAVAILABLE"),
             ("openai", "openai", "chat/completions", chat_error, "server_error"),
             ("anthropic", "openai", "messages", chat_error, "server_error"),
             ("gemini", "openai", "generateContent", chat_error, "server_error")]
    for client, upstream, endpoint, error, kind in cases:
        tap = codec_for(client, upstream).stream(out({}, endpoint=endpoint, stream=True))
        assert tap.error is None
        tap.feed(error)
        tap.flush()
        assert tap.error == f"upstream_stream_error:{kind}", (client, upstream)
