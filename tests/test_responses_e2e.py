"""End to end through a real gateway process (tests/native_support.py): the official openai SDK's
`client.responses.create`, whole and streamed, with a function-call round trip, against the fake
OpenAI-compatible upstream (chat completions only) and the fake Anthropic upstream; what reached
each upstream, and the usage rows in the ledger."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.native_support import KEY, Native, native, script_openai_tool_call

__all__ = ["native"]
MODELS = ["gpt-x", "claude-x"]
WHOLE = {"gpt-x": "fake answer from gpt-x", "claude-x": "fake answer from claude-x"}
STREAMED = {"gpt-x": "Hello from the fake upstream.", "claude-x": "fake answer from claude-x"}
# (prompt_tokens, completion_tokens, cached_tokens) as the chat endpoint records them
LEDGER = {("gpt-x", False): (12, 5, 4), ("gpt-x", True): (11, 5, 3),
          ("claude-x", False): (28, 7, 5), ("claude-x", True): (28, 7, 5)}
TOOLS: Any = [{"type": "function", "name": "get_weather", "description": "weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def _client(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


def _sent(n: Native, model: str) -> dict[str, Any]:
    received = n.oa.received if model == "gpt-x" else n.an.received
    path = "/v1/chat/completions" if model == "gpt-x" else "/v1/messages"
    assert received[-1].path == path
    return dict(received[-1].json())


def _usage(n: Native, model: str, stream: bool, id_: str) -> tuple[int, int, int]:
    provider = "oa" if model == "gpt-x" else "an"
    sql = ("SELECT prompt_tokens, completion_tokens, cached_tokens FROM usage WHERE endpoint = 'responses' "
           f"AND status = 200 AND provider = '{provider}' AND stream = {str(stream).lower()} "
           f"AND request_id = '{id_}'")
    rows = n.gw.usage_rows(sql, until=lambda rows: len(rows) == 1)
    assert len(rows) == 1, rows
    return rows[0]["prompt_tokens"], rows[0]["completion_tokens"], rows[0]["cached_tokens"]


@pytest.mark.parametrize("model", MODELS)
def test_whole_response(native: Native, model: str) -> None:
    raw = _client(native).responses.with_raw_response.create(
        model=model, instructions="be brief", input="hi", max_output_tokens=50, temperature=0.5)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.output_text == WHOLE[model]
    assert r.output[0].type == "message" and r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.input_tokens_details.cached_tokens) \
        == LEDGER[model, False]
    sent = _sent(native, model)
    assert sent["model"] == model and sent["max_tokens"] == 50 and sent["temperature"] == 0.5
    if model == "gpt-x":
        assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    else:
        assert "be brief" in json.dumps(sent["system"])
        assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert _usage(native, model, False, raw.headers["x-request-id"]) == LEDGER[model, False]


@pytest.mark.parametrize("model", MODELS)
def test_streamed_response(native: Native, model: str) -> None:
    with _client(native).responses.with_streaming_response.create(model=model, input="hi", stream=True) as raw:
        request_id = raw.headers["x-request-id"]
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() == STREAMED[model]
    done = events[-1]
    assert done.type == "response.completed" and done.response.usage is not None
    u = done.response.usage
    assert (u.input_tokens, u.output_tokens, u.input_tokens_details.cached_tokens) == LEDGER[model, True]
    sent = _sent(native, model)
    assert sent["stream"] is True
    if model == "gpt-x":
        assert sent["stream_options"] == {"include_usage": True}
    assert _usage(native, model, True, request_id) == LEDGER[model, True]



@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(native: Native, model: str) -> None:
    c = _client(native)
    if model == "gpt-x":
        script_openai_tool_call(native)
    user: Any = {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]}
    r = c.responses.create(model=model, input=[user], tools=TOOLS, tool_choice="auto")
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    tools_sent = _sent(native, model)["tools"]
    assert tools_sent[0]["name" if model == "claude-x" else "function"] == (
        "get_weather" if model == "claude-x" else {"name": "get_weather", "description": "weather",
                                                   "parameters": TOOLS[0]["parameters"]})
    follow: Any = [user, *[o.model_dump(exclude_none=True) for o in r.output],
                   {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}]
    r2 = c.responses.create(model=model, input=follow, tools=TOOLS)
    sent = _sent(native, model)
    if model == "gpt-x":
        assert sent["messages"][-2]["tool_calls"][0]["id"] == calls[0].call_id
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "sunny"}
        assert r2.output_text == WHOLE[model]
    else:
        result = sent["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == calls[0].call_id
        assert r2.output_text == "tool said: sunny"


def test_streamed_function_call_from_anthropic(native: Native) -> None:
    events = list(_client(native).responses.create(model="claude-x", input="weather?", tools=TOOLS, stream=True))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert added[0].item.type == "function_call" and added[0].item.name == "get_weather"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(args) == json.loads(done[0].arguments) == {"city": "Paris"}
    final = events[-1]
    assert final.type == "response.completed"
    assert [o.type for o in final.response.output] == ["function_call"]


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "web_search"),
])
def test_untranslatable_requests_are_a_400(native: Native, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(native).responses.create(model="claude-x", input="hi", **kwargs)
    assert named in err.value.message
