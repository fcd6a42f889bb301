"""The Responses API (`/v1/responses`) translated to chat completions for upstreams that lack it:
request, whole answer and stream, over fixtures; which provider kinds keep the pass-through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.usage import TokenUsage
from gateway.errors import InvalidRequest
from gateway.providers.codecs import codec_for
from gateway.providers.translate.openai_openai import OpenAICodec
from gateway.providers.translate.via_chat import ViaChat
from tests.test_translate_native import fixture, out

TRANSLATED = ["openai-compatible", "mock", "anthropic", "gemini"]


def _out(body: Any, stream: bool = False) -> Any:
    return out(body, endpoint="responses", stream=stream, usage=False)


def _chat(body: Any, kind: str = "openai-compatible") -> tuple[str, Any]:
    endpoint, data = codec_for("openai", kind, "responses").request(_out(body))
    return endpoint, json.loads(data)


# -- which kinds translate -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["openai", "azure"])
def test_openai_and_azure_keep_the_pass_through(kind: str) -> None:
    codec = codec_for("openai", kind, "responses")
    assert isinstance(codec, OpenAICodec)
    body = fixture("responses_request.json")
    assert codec.request(out(body, endpoint="responses"))[0] == "responses"


@pytest.mark.parametrize("kind", TRANSLATED)
def test_other_kinds_translate_through_chat(kind: str) -> None:
    assert isinstance(codec_for("openai", kind, "responses"), ViaChat)
    assert not isinstance(codec_for("openai", kind, "chat/completions"), ViaChat)  # chat unchanged


# -- the request -----------------------------------------------------------------------------

def test_request_fixture_becomes_a_chat_request() -> None:
    endpoint, chat = _chat(fixture("responses_request.json"))
    assert endpoint == "chat/completions"
    assert chat["model"] == "up-model" and chat["max_tokens"] == 256
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.2, 0.9, "u-1")
    assert chat["reasoning_effort"] == "low" and chat["parallel_tool_calls"] is False
    assert "metadata" not in chat and "store" not in chat and "stream" not in chat
    m = chat["messages"]
    assert [x["role"] for x in m] == ["system", "system", "user", "assistant", "tool", "tool"]
    assert m[0]["content"] == "Answer briefly." and m[1]["content"] == "Use metric units."
    assert m[2]["content"] == [
        {"type": "text", "text": "What is in this picture, and the weather?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]
    # the assistant text and both (parallel) calls are one assistant turn; the reasoning item is dropped
    assert m[3]["content"] == "A cat. Checking the weather."
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in m[3]["tool_calls"]] \
        == [("call_1", "get_weather", {"city": "Paris"}), ("call_2", "get_weather", {"city": "Oslo"})]
    assert (m[4]["tool_call_id"], m[4]["content"]) == ("call_1", "18C, sunny")
    assert (m[5]["tool_call_id"], m[5]["content"]) == ("call_2", "3C, snow")
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "strict": True}}


def test_string_input_and_stream_ask_for_usage() -> None:
    body = {"model": "m", "input": "hi", "stream": True}
    _, chat = codec_for("openai", "openai-compatible", "responses").request(_out(body, stream=True))
    doc = json.loads(chat)
    assert doc["messages"] == [{"role": "user", "content": "hi"}]
    assert doc["stream"] is True and doc["stream_options"] == {"include_usage": True}


def test_request_reaches_anthropic_with_system_and_tool_results() -> None:
    endpoint, doc = _chat(fixture("responses_request.json"), "anthropic")
    # reasoning.effort "low" is a 2048-token thinking budget, added to max_output_tokens 256
    # (translate/reasoning.py): Anthropic needs max_tokens above the budget
    assert endpoint == "messages" and doc["model"] == "up-model" and doc["max_tokens"] == 256 + 2048
    assert doc["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "Answer briefly." in json.dumps(doc["system"])
    results = [b for m in doc["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["call_1", "call_2"]


@pytest.mark.parametrize(("patch", "named"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs"]}]}, "file_search"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"input": [{"role": "user", "content": [{"type": "input_video", "url": "x"}]}]}, "input_video"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "image_url"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
    ({"input": 42}, "Responses request"),
])
@pytest.mark.parametrize("kind", ["openai-compatible", "anthropic", "gemini"])
def test_untranslatable_requests_are_a_400_naming_what(patch: dict[str, Any], named: str, kind: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _chat({"model": "m", "input": "hi", **patch}, kind)
    assert named in err.value.message and err.value.status == 400


def test_store_is_ignored() -> None:
    _, chat = _chat({"model": "m", "input": "hi", "store": True})
    assert "store" not in chat


# -- the whole answer ------------------------------------------------------------------------

def test_chat_completion_becomes_a_response_object() -> None:
    codec = codec_for("openai", "openai-compatible", "responses")
    request = {"model": "m", "input": "weather?", "instructions": "be brief", "max_output_tokens": 16,
               "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}
    body, usage = codec.response(fixture("openai_completion_tool_length.json"), _out(request))
    assert usage == TokenUsage(prompt_tokens=40, completion_tokens=16, cached_tokens=8, reasoning_tokens=4)
    r = json.loads(body)
    assert (r["object"], r["id"], r["model"], r["created_at"]) == ("response", "resp_chatcmpl-t1", "qwen-2.5",
                                                                    1700000000)
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    message, call = r["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Let me look that up.", "annotations": [],
                                   "logprobs": []}]
    assert {k: call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call", "call_id": "call_9", "name": "get_weather",
        "arguments": '{"city": "Rome"}', "status": "completed"}
    assert r["usage"] == {"input_tokens": 40, "output_tokens": 16, "total_tokens": 56,
                          "input_tokens_details": {"cached_tokens": 8},
                          "output_tokens_details": {"reasoning_tokens": 4}}
    assert r["instructions"] == "be brief" and r["max_output_tokens"] == 16
    assert r["tools"][0]["name"] == "get_weather"


def test_completed_status_and_text_only() -> None:
    codec = codec_for("openai", "mock", "responses")
    body, _ = codec.response(fixture("openai_completion_reasoning.json"), _out({"model": "m", "input": "hi"}))
    r = json.loads(body)
    assert r["status"] == "completed" and r["incomplete_details"] is None
    assert [o["type"] for o in r["output"]] == ["message"] and r["output"][0]["content"][0]["text"] == "Hello!"
    assert r["usage"]["output_tokens_details"] == {"reasoning_tokens": 10}
