"""End to end through a real gateway process: the official openai, anthropic and google-genai
SDKs against fake OpenAI, Anthropic and Gemini upstreams (all nine pairs), whole and streamed,
tool-call round trips, native error shapes, and the usage rows in the ledger."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gateway.usage.client import call
from tests.native_support import KEY, Native, native, script_openai_tool_call

__all__ = ["native"]
MODELS = ["gpt-x", "claude-x", "gemini-x"]
WHOLE = {"gpt-x": "fake answer from gpt-x", "claude-x": "fake answer from claude-x",
         "gemini-x": "fake answer from gemini-x"}
STREAMED = {**WHOLE, "gpt-x": "Hello from the fake upstream."}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}



# -- the openai SDK --------------------------------------------------------------------------

def _oai(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_whole_and_streamed(native: Native, model: str) -> None:
    c = _oai(native)
    r = c.chat.completions.create(model=model, messages=[{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == WHOLE[model]
    assert r.choices[0].finish_reason == "stop" and r.usage is not None and r.usage.prompt_tokens > 0
    chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip() == STREAMED[model]
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_tool_round_trip(native: Native, model: str) -> None:
    c = _oai(native)
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                    "parameters": WEATHER}}]
    if model == "gpt-x":
        script_openai_tool_call(native)
    user: Any = {"role": "user", "content": "weather in Paris?"}
    r = c.chat.completions.create(model=model, messages=[user], tools=tools, tool_choice="auto")
    assert r.choices[0].finish_reason == "tool_calls"
    tc = r.choices[0].message.tool_calls
    assert tc and tc[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(tc[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages: Any = [user, r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": tc[0].id, "content": "sunny"}]
    r2 = c.chat.completions.create(model=model, messages=messages, tools=tools)
    assert "sunny" in (r2.choices[0].message.content or "") or model == "gpt-x"


@pytest.mark.parametrize("model", ["claude-x", "gemini-x"])
def test_openai_sdk_streamed_tool_call(native: Native, model: str) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    chunks = list(_oai(native).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or ()]
    assert calls[0].function and calls[0].function.name == "get_weather" and calls[0].id
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_image_and_max_tokens_reach_anthropic(native: Native) -> None:
    native.an.received.clear()
    content: Any = [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    _oai(native).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": content}])
    sent = native.an.received[-1]
    assert sent.headers["x-api-key"] == "sk-ant" and KEY not in str(sent.headers)
    doc = sent.json()
    assert doc["max_tokens"] == 777  # the provider's default_max_tokens
    assert doc["messages"][0]["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                                          "data": "iVBORw0KGgo="}


# -- the anthropic SDK -----------------------------------------------------------------------

def _ant(n: Native, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=n.gw.url, api_key=key, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_whole_and_streamed(native: Native, model: str) -> None:
    a = _ant(native)
    msg = a.messages.create(model=model, max_tokens=100, system="be brief",
                            messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == WHOLE[model]
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    with a.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.strip() == STREAMED[model]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_tool_round_trip(native: Native, model: str) -> None:
    a = _ant(native)
    tools: Any = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER}]
    if model == "gpt-x":
        script_openai_tool_call(native)
    user: Any = {"role": "user", "content": "weather in Paris?"}
    msg = a.messages.create(model=model, max_tokens=100, messages=[user], tools=tools)
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages: Any = [user, {"role": "assistant", "content": msg.content},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": "sunny"}]}]
    msg2 = a.messages.create(model=model, max_tokens=100, messages=messages, tools=tools)
    text = "".join(b.text for b in msg2.content if b.type == "text")
    assert "sunny" in text or model == "gpt-x"


@pytest.mark.parametrize("model", ["claude-x", "gemini-x"])
def test_anthropic_sdk_streamed_tool_call(native: Native, model: str) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER}]
    with _ant(native).messages.stream(model=model, max_tokens=50, tools=tools,
                                      messages=[{"role": "user", "content": "weather?"}]) as s:
        final = s.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_anthropic_errors_have_anthropic_shape(native: Native) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        _ant(native, "tg-wrong").messages.create(model="claude-x", max_tokens=5,
                                                 messages=[{"role": "user", "content": "hi"}])
    assert bad_key.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                             "message": "invalid API key"}}
    with pytest.raises(anthropic.NotFoundError):
        _ant(native).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


# -- the google-genai SDK --------------------------------------------------------------------

def _gen(n: Native, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=n.gw.url, api_version="v1beta"))


@pytest.mark.parametrize("model", MODELS)
def test_genai_sdk_whole_and_streamed(native: Native, model: str) -> None:
    g = _gen(native)
    config = types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=50)
    r = g.models.generate_content(model=model, contents="hi", config=config)
    assert (r.text or "").strip() == WHOLE[model]
    assert r.usage_metadata is not None and (r.usage_metadata.prompt_token_count or 0) > 0
    chunks = list(g.models.generate_content_stream(model=model, contents="hi"))
    assert "".join(c.text or "" for c in chunks).strip() == STREAMED[model]
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and (last.usage_metadata.total_token_count or 0) > 0


@pytest.mark.parametrize("model", MODELS)
def test_genai_sdk_tool_round_trip(native: Native, model: str) -> None:
    g = _gen(native)
    decl = types.FunctionDeclaration(name="get_weather", description="weather", parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]))
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])])
    if model == "gpt-x":
        script_openai_tool_call(native)
    r = g.models.generate_content(model=model, contents="weather in Paris?", config=config)
    assert r.function_calls and r.function_calls[0].name == "get_weather"
    assert r.function_calls[0].args == {"city": "Paris"}
    assert r.candidates and r.candidates[0].content
    contents: Any = [types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
                     r.candidates[0].content,
                     types.Content(role="user", parts=[types.Part.from_function_response(
                         name="get_weather", response={"weather": "sunny"})])]
    r2 = g.models.generate_content(model=model, contents=contents, config=config)
    assert "sunny" in (r2.text or "") or model == "gpt-x"


def test_genai_errors_and_models(native: Native) -> None:
    wrong, g = _gen(native, "tg-wrong"), _gen(native)  # held: a dropped client closes its pool
    with pytest.raises(genai_errors.ClientError) as bad_key:
        wrong.models.generate_content(model="gemini-x", contents="hi")
    assert bad_key.value.code == 401 and bad_key.value.status == "UNAUTHENTICATED"
    names = [m.name for m in g.models.list()]
    assert "models/gemini-x" in names and "models/claude-x" in names
    got = g.models.get(model="gemini-x")
    assert got.name == "models/gemini-x"


# -- the ledger ------------------------------------------------------------------------------

def _sql(n: Native, sql: str) -> list[list[Any]]:
    answer = call(n.gw.data_dir, {"op": "query", "sql": sql})
    assert "error" not in answer, answer
    return list(answer["rows"])


def test_usage_rows_for_every_family(native: Native) -> None:
    """Runs after the calls above: each client family reached each upstream, and the upstream's
    usage (cache reads and writes, thoughts) is normalised the same way whatever the client."""
    want = {(e, p) for e in ("chat/completions", "messages", "generateContent") for p in ("oa", "an", "ge")}
    sql = "SELECT DISTINCT endpoint, provider FROM usage WHERE status = 200"
    deadline = time.monotonic() + 10
    while {tuple(r) for r in _sql(native, sql)} != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {tuple(r) for r in _sql(native, sql)} == want
    rows = _sql(native, "SELECT DISTINCT provider, stream, prompt_tokens, completion_tokens, cached_tokens, "
                        "cache_write_tokens, reasoning_tokens, usage_source FROM usage "
                        "WHERE status = 200 AND provider IN ('an', 'ge') ORDER BY ALL")
    assert rows == [["an", False, 28, 7, 5, 3, 0, "upstream"], ["an", True, 28, 7, 5, 3, 0, "upstream"],
                    ["ge", False, 21, 8, 4, 0, 2, "upstream"], ["ge", True, 21, 8, 4, 0, 2, "upstream"]]
    priced = _sql(native, "SELECT count(*) FROM usage WHERE provider = 'an' AND cost_usd IS NULL")
    assert priced == [[0]]
