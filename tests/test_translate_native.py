"""Unit tests of each translation direction against recorded-style payloads in tests/fixtures:
requests, whole answers, and streams fed in awkward slices (events must come out as soon as
they are complete, and usage must be normalised: prompt includes cache reads and writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config.snapshot import ProviderRuntime
from gateway.config.types import AnthropicProvider, Timeouts
from gateway.core.usage import TokenUsage
from gateway.providers.codecs import codec_for
from gateway.providers.translate.codec import Codec, Outgoing, StreamTap

FIXTURES = Path(__file__).parent / "fixtures"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def out(body: Any, endpoint: str = "chat/completions", stream: bool = False, usage: bool = True,
        provider: ProviderRuntime | None = None) -> Outgoing:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Outgoing(endpoint, raw, "client-model", "up-model", stream, usage, provider=provider)


def run(tap: StreamTap, data: bytes, step: int = 7) -> list[bytes]:
    """Feed `data` in `step`-byte slices; return the non-empty outputs."""
    outputs = [tap.feed(data[i:i + step]) for i in range(0, len(data), step)]
    return [o for o in [*outputs, tap.flush()] if o]


def events(blob: bytes) -> list[Any]:
    docs = []
    for raw in blob.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in raw.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                docs.append(json.loads(line[6:]))
    return docs


def request(codec: Codec, body: Any, **kw: Any) -> tuple[str, Any]:
    endpoint, data = codec.request(out(body, **kw))
    return endpoint, json.loads(data)


CHAT = {"model": "client-model", "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "look"},
                                 {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "c2", "content": "{\"t\": \"noon\"}"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
    "stop": "END", "temperature": 1.5}


# -- openai -> anthropic ---------------------------------------------------------------------

def test_openai_to_anthropic_request() -> None:
    spec = AnthropicProvider(id="an", default_max_tokens=321)
    provider = ProviderRuntime("an", "anthropic", "http://x", (), frozenset(), 0, 1, Timeouts(), (), {}, spec)
    endpoint, doc = request(codec_for("openai", "anthropic"), CHAT, provider=provider)
    assert endpoint == "messages" and doc["model"] == "up-model" and doc["max_tokens"] == 321
    assert doc["system"] == "be brief" and doc["stop_sequences"] == ["END"] and doc["temperature"] == 1.0
    user, assistant, results = doc["messages"]
    assert user["content"][1] == {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}
    assert user["content"][2]["source"] == {"type": "base64", "media_type": "image/png", "data": "QUJD"}
    assert [b["input"] for b in assistant["content"]] == [{"city": "Paris"}, {}]
    assert results == {"role": "user", "content": [  # consecutive tool results: one user turn
        {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "c2", "content": "{\"t\": \"noon\"}"}]}
    assert doc["tools"] == [{"name": "get_weather", "input_schema": WEATHER}]
    assert doc["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


def test_anthropic_answer_to_openai() -> None:
    body, usage = codec_for("openai", "anthropic").response(fixture("anthropic_message_tool.json"), out({}))
    doc = json.loads(body)
    msg = doc["choices"][0]["message"]
    assert doc["object"] == "chat.completion" and doc["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["content"] == "Checking." and json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"}
    assert usage == TokenUsage(prompt_tokens=175, completion_tokens=30, cached_tokens=25, cache_write_tokens=50)
    assert doc["usage"]["prompt_tokens"] == 175 and doc["usage"]["prompt_tokens_details"]["cached_tokens"] == 25


def test_anthropic_stream_to_openai_chunks() -> None:
    tap = codec_for("openai", "anthropic").stream(out({}, stream=True))
    first = fixture("anthropic_stream_tool.sse").split(b"\n\n")[0] + b"\n\n"
    assert b"chat.completion.chunk" in tap.feed(first)  # message_start out at once
    docs = events(b"".join(run(tap, fixture("anthropic_stream_tool.sse")[len(first):])))
    deltas = [d["choices"][0]["delta"] for d in docs if d["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Need the weather."
    assert "".join(d.get("content", "") for d in deltas) == "Let me check."
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0]["id"] == "toolu_01" and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert [d["choices"][0]["finish_reason"] for d in docs if d["choices"]][-1] == "tool_calls"
    assert docs[-1]["usage"]["prompt_tokens"] == 1610 and docs[-1]["usage"]["completion_tokens"] == 89
    assert tap.usage == TokenUsage(prompt_tokens=1610, completion_tokens=89, cached_tokens=1200)


# -- openai -> gemini ------------------------------------------------------------------------

def test_openai_to_gemini_request() -> None:
    body = {**CHAT, "response_format": {"type": "json_object"}, "max_tokens": 99, "tool_choice": "required"}
    endpoint, doc = request(codec_for("openai", "gemini"), body)
    assert endpoint == "generateContent" and "model" not in doc
    assert doc["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    user, model, results = doc["contents"]
    assert user["parts"][1] == {"fileData": {"fileUri": "https://x.test/cat.png", "mimeType": "image/png"}}
    assert user["parts"][2] == {"inlineData": {"mimeType": "image/png", "data": "QUJD"}}
    assert model["role"] == "model" and model["parts"][0]["functionCall"] == {
        "name": "get_weather", "args": {"city": "Paris"}}
    assert [p["functionResponse"] for p in results["parts"]] == [
        {"name": "get_weather", "response": {"result": "sunny"}}, {"name": "get_time", "response": {"t": "noon"}}]
    assert doc["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "object", "properties": {"city": {"type": "string"}}}  # additionalProperties dropped
    assert doc["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert doc["generationConfig"] == {"maxOutputTokens": 99, "temperature": 1.5, "stopSequences": ["END"],
                                       "responseMimeType": "application/json"}


def test_gemini_answer_to_openai() -> None:
    body, usage = codec_for("openai", "gemini").response(fixture("gemini_response.json"), out({}))
    doc = json.loads(body)
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Sunny"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "log", "arguments": '{"n":1}'}
    assert usage == TokenUsage(prompt_tokens=50, completion_tokens=12, cached_tokens=20, reasoning_tokens=7)


def test_gemini_stream_to_openai_chunks() -> None:
    tap = codec_for("openai", "gemini").stream(out({}, stream=True))
    pieces = run(tap, fixture("gemini_stream_tool.sse"), step=11)
    docs = events(b"".join(pieces))
    deltas = [d["choices"][0]["delta"] for d in docs if d["choices"]]
    assert deltas[0]["role"] == "assistant" and deltas[0]["reasoning_content"] == "Thinking about it"
    assert deltas[1]["content"] == "The weather"
    assert deltas[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert docs[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert docs[-1]["usage"]["completion_tokens"] == 52 and pieces[-1].endswith(b"data: [DONE]\n\n")
    assert tap.usage == TokenUsage(prompt_tokens=30, completion_tokens=52, cached_tokens=10, reasoning_tokens=40)


# -- anthropic -> openai, gemini -> openai ---------------------------------------------------

def test_anthropic_request_to_openai() -> None:
    body = {"model": "client-model", "max_tokens": 50, "system": [{"type": "text", "text": "be brief"}],
            "stream": True, "tools": [{"name": "get_weather", "input_schema": WEATHER}],
            "tool_choice": {"type": "any"}, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {
                    "type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                                   "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                                             {"type": "text", "text": "thanks"}]}]}
    endpoint, doc = request(codec_for("anthropic", "openai"), body, endpoint="messages", stream=True)
    assert endpoint == "chat/completions" and doc["stream_options"] == {"include_usage": True}
    roles = [m["role"] for m in doc["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert doc["messages"][1]["content"][1]["image_url"]["url"] == "data:image/jpeg;base64,QUJD"
    assert doc["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
    assert doc["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "t1"}
    assert doc["tool_choice"] == "required" and doc["max_tokens"] == 50


def test_openai_stream_to_anthropic_events() -> None:
    tap = codec_for("anthropic", "openai").stream(out({}, endpoint="messages", stream=True))
    blob = b"".join(run(tap, fixture("openai_stream_tool.sse"), step=13))
    names = [line[7:].decode() for line in blob.split(b"\n") if line.startswith(b"event: ")]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    docs = events(blob)
    assert docs[4]["content_block"] == {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {}}
    assert json.loads(docs[5]["delta"]["partial_json"] + docs[6]["delta"]["partial_json"]) == {"city": "Paris"}
    assert docs[8]["delta"]["stop_reason"] == "tool_use"
    assert docs[8]["usage"] == {"input_tokens": 16, "output_tokens": 20, "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 64}


def test_gemini_request_to_openai_matches_call_ids() -> None:
    body = {"contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"w": "sunny"}}}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {
            "type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
        "generationConfig": {"maxOutputTokens": 20, "responseMimeType": "application/json"}}
    _, doc = request(codec_for("gemini", "openai"), body, endpoint="generateContent")
    call_id = doc["messages"][1]["tool_calls"][0]["id"]
    assert doc["messages"][2] == {"role": "tool", "content": '{"w":"sunny"}', "tool_call_id": call_id}
    assert doc["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert doc["response_format"] == {"type": "json_object"} and doc["max_tokens"] == 20


def test_openai_stream_to_gemini_chunks() -> None:
    tap = codec_for("gemini", "openai").stream(out({}, endpoint="generateContent", stream=True))
    docs = events(b"".join(run(tap, fixture("openai_stream_tool.sse"))))
    assert docs[0]["candidates"][0]["content"]["parts"] == [{"text": "Let me check."}]
    last = docs[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    assert last["usageMetadata"]["promptTokenCount"] == 80 and last["usageMetadata"]["cachedContentTokenCount"] == 64


# -- pass-through and via chat ---------------------------------------------------------------

def test_passthrough_taps_forward_bytes_and_read_usage() -> None:
    data = fixture("anthropic_stream_tool.sse")
    tap = codec_for("anthropic", "anthropic").stream(out({}, endpoint="messages", stream=True))
    assert b"".join(run(tap, data)) == data
    assert tap.usage == TokenUsage(prompt_tokens=1610, completion_tokens=89, cached_tokens=1200)
    gem = fixture("gemini_stream_tool.sse")
    tap = codec_for("gemini", "gemini").stream(out({}, endpoint="generateContent", stream=True))
    assert b"".join(run(tap, gem)) == gem and tap.usage is not None and tap.usage.reasoning_tokens == 40
    _, body = codec_for("anthropic", "anthropic").request(out({"model": "client-model", "messages": []}))
    assert json.loads(body)["model"] == "up-model"


def test_anthropic_client_to_gemini_upstream_stream() -> None:
    codec = codec_for("anthropic", "gemini")
    endpoint, body = codec.request(out({"model": "m", "max_tokens": 5, "stream": True,
                                        "messages": [{"role": "user", "content": "hi"}]}, "messages", True))
    assert endpoint == "generateContent" and json.loads(body)["contents"] == [
        {"parts": [{"text": "hi"}], "role": "user"}]
    tap = codec.stream(out({}, endpoint="messages", stream=True))
    blob = b"".join(run(tap, fixture("gemini_stream_tool.sse")))
    docs = events(blob)
    assert docs[0]["type"] == "message_start" and docs[-1]["type"] == "message_stop"
    assert any(d.get("content_block", {}).get("type") == "tool_use" for d in docs)
    assert docs[-2]["delta"]["stop_reason"] == "tool_use"
    assert tap.usage is not None and tap.usage.prompt_tokens == 30
