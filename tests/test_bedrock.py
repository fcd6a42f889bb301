"""AWS Bedrock end to end: a real gateway process in front of the fake Bedrock runtime
(tests/fakes/bedrock_upstream.py: it verifies every SigV4 signature with botocore and streams
real event-stream frames), through the official openai, anthropic and google-genai SDKs: whole
and streamed answers, tools, an image, the system prompt, the usage rows with cache tokens priced,
a refused signature, an exception and a corrupt frame inside the stream."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import key_hash
from tests.fakes.bedrock_upstream import ACCESS_KEY, SECRET_KEY, FakeBedrock
from tests.gateway_process import GatewayProcess

KEY = "tg-bedrock"
MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
BUNDLE = """
schema = 1

[[provider]]
id = "aws"
kind = "bedrock"
region = "us-west-2"
base_url = "{br}"
access_key_id = "${{BR_TEST_KEY_ID}}"
secret_access_key = "${{BR_TEST_SECRET}}"
session_token = "${{BR_TEST_TOKEN}}"
models = ["claude-br"]
model_map = {{ "claude-br" = "{model_id}" }}
default_max_tokens = 321

[[provider]]
id = "aws-wrong"
kind = "bedrock"
region = "us-west-2"
base_url = "{br}"
access_key_id = "AKIAWRONG"
secret_access_key = "not-the-secret"
models = ["claude-wrong"]

[[provider]]
id = "aws-profile"
kind = "bedrock"
region = "us-west-2"
base_url = "{br}"
profile = "tollgate-test"
models = ["claude-profile"]

[price."{model_id}"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

[[provider]]
id = "aws-cache"
kind = "bedrock"
region = "us-west-2"
base_url = "{br}"
access_key_id = "${{BR_TEST_KEY_ID}}"
secret_access_key = "${{BR_TEST_SECRET}}"
prompt_cache = true
models = ["claude-cache"]

[price.claude-cache]
input = 1.0
output = 1.0

[price.claude-profile]
input = 1.0
output = 1.0

[price.claude-wrong]
input = 1.0
output = 1.0

[[key]]
id = "bedrock-test"
hash = "{h}"
"""
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


@dataclass
class Env:
    gw: GatewayProcess
    br: FakeBedrock


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    br = FakeBedrock(region="us-west-2").start()
    root = tmp_path_factory.mktemp("bedrock")
    (root / "policies").mkdir()
    (root / "policies" / "bundle.toml").write_text(
        BUNDLE.format(br=br.base_url, model_id=MODEL_ID, h=key_hash(KEY)))
    credentials = root / "aws-credentials"  # the AWS chain's shared credentials file, for `profile`
    credentials.write_text(f"[tollgate-test]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = {SECRET_KEY}\n")
    secrets = {"BR_TEST_KEY_ID": ACCESS_KEY, "BR_TEST_SECRET": SECRET_KEY, "BR_TEST_TOKEN": "session-token-xyz",
               "AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(root / "no-aws-config"),
               "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        with GatewayProcess(root / "policies", Path(root / "data"), env=secrets) as gw:
            yield Env(gw, br)
    finally:
        br.stop()


def _oai(e: Env) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{e.gw.url}/v1", api_key=KEY, max_retries=0)


def _last(e: Env) -> dict[str, Any]:
    return e.br.received[-1].json()  # type: ignore[no-any-return]


def test_openai_whole_answer_is_signed_and_translated(env: Env) -> None:
    r = _oai(env).chat.completions.create(
        model="claude-br", temperature=0.2, stop=["END"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == f"fake answer from {MODEL_ID}"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (28, 7)
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 5
    sent = env.br.received[-1]
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent.headers["x-amz-security-token"] == "session-token-xyz"
    assert "x-amz-security-token" in sent.headers["authorization"]  # signed, not just sent
    assert sent.json() == {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                           "system": [{"text": "be brief"}],
                           "inferenceConfig": {"maxTokens": 321, "temperature": 0.2, "stopSequences": ["END"]}}


def test_openai_stream_reads_event_stream_frames(env: Env) -> None:
    chunks = list(_oai(env).chat.completions.create(
        model="claude-br", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert env.br.received[-1].path.endswith("/converse-stream")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip() == f"fake answer from {MODEL_ID}"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (28, 7)


def test_openai_tool_round_trip_and_streamed_tool_call(env: Env) -> None:
    c = _oai(env)
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                    "parameters": WEATHER}}]
    user: Any = {"role": "user", "content": "weather in Paris?"}
    r = c.chat.completions.create(model="claude-br", messages=[user], tools=tools, tool_choice="required")
    assert _last(env)["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "weather", "inputSchema": {"json": WEATHER}}}], "toolChoice": {"any": {}}}
    assert r.choices[0].finish_reason == "tool_calls"
    tc = r.choices[0].message.tool_calls
    assert tc and tc[0].id == "tooluse_1" and tc[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(tc[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages: Any = [user, r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": tc[0].id, "content": "sunny"}]
    r2 = c.chat.completions.create(model="claude-br", messages=messages, tools=tools)
    assert r2.choices[0].message.content == "tool said: sunny"
    turns = _last(env)["messages"]
    assert turns[1] == {"role": "assistant", "content": [{"toolUse": {
        "toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert turns[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1",
                                                                    "content": [{"text": "sunny"}]}}]}
    chunks = list(c.chat.completions.create(model="claude-br", messages=[user], tools=tools, stream=True))
    calls = [t for ch in chunks if ch.choices for t in ch.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "tooluse_1" and calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in calls if t.function)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_image_goes_inline(env: Env) -> None:
    content: Any = [{"type": "text", "text": "what is it?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    r = _oai(env).chat.completions.create(model="claude-br", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "saw a png image"
    assert _last(env)["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    with pytest.raises(openai.BadRequestError) as refused:  # Converse takes no image links
        _oai(env).chat.completions.create(model="claude-br", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}]}])
    assert "inline" in str(refused.value)


def test_anthropic_sdk_whole_stream_and_tools(env: Env) -> None:
    c = anthropic.Anthropic(base_url=env.gw.url, api_key=KEY, max_retries=0)
    m = c.messages.create(model="claude-br", max_tokens=50, system="be brief",
                          messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].type == "text" and m.content[0].text == f"fake answer from {MODEL_ID}"
    assert m.stop_reason == "end_turn" and m.usage.output_tokens == 7
    assert m.usage.cache_read_input_tokens == 5
    assert _last(env)["system"] == [{"text": "be brief"}] and _last(env)["inferenceConfig"]["maxTokens"] == 50
    with c.messages.stream(model="claude-br", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.strip() == f"fake answer from {MODEL_ID}" and final.usage.output_tokens == 7
    tool: Any = {"name": "get_weather", "description": "weather", "input_schema": WEATHER}
    m = c.messages.create(model="claude-br", max_tokens=50, tools=[tool],
                          messages=[{"role": "user", "content": "weather?"}])
    assert m.stop_reason == "tool_use"
    use = next(b for b in m.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}


def test_gemini_sdk_whole_and_stream(env: Env) -> None:
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=env.gw.url))
    r = c.models.generate_content(model="claude-br", contents="hi",
                                  config=types.GenerateContentConfig(system_instruction="be brief"))
    assert r.text == f"fake answer from {MODEL_ID}"
    assert r.usage_metadata is not None and r.usage_metadata.candidates_token_count == 7
    assert _last(env)["system"] == [{"text": "be brief"}]
    text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="claude-br", contents="hi"))
    assert text.strip() == f"fake answer from {MODEL_ID}"


def test_usage_rows_price_cache_tokens(env: Env) -> None:
    _oai(env).chat.completions.create(model="claude-br", user="ledger-probe",
                                      messages=[{"role": "user", "content": "ledger"}])
    rows = env.gw.usage_rows(
        "SELECT provider, served_model, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
        "cost_usd FROM usage WHERE provider = 'aws' AND status = 200", until=lambda r: len(r) >= 5)
    assert rows, "no usage rows"
    for row in rows:
        assert row["served_model"] == MODEL_ID
        assert (row["prompt_tokens"], row["completion_tokens"]) == (28, 7)
        assert (row["cached_tokens"], row["cache_write_tokens"]) == (5, 3)
        # 20 uncached at 3.0, 5 cache reads at 0.3, 3 cache writes at 3.75, 7 output at 15.0 per million
        assert Decimal(str(row["cost_usd"])) == Decimal("0.00017775")


def test_wrong_signature_is_a_clear_502(env: Env) -> None:
    before = len(env.br.refused)
    with pytest.raises(openai.APIStatusError) as failed:
        _oai(env).chat.completions.create(model="claude-wrong", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502
    assert "aws-wrong" in str(failed.value) and "not-the-secret" not in str(failed.value)
    assert env.br.refused[before:] == ["signature mismatch"]


def test_exception_and_corrupt_frame_inside_the_stream(env: Env) -> None:
    body = {"model": "claude-br", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    for flag, expected in (("stream_exception", "throttlingException"), ("corrupt_crc", "framing")):
        setattr(env.br, flag, True)
        try:
            r = httpx.post(f"{env.gw.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
        finally:
            setattr(env.br, flag, False)
        assert r.status_code == 200
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        errors = [json.loads(e)["error"] for e in events if e != "[DONE]" and "error" in json.loads(e)]
        assert errors and expected in errors[0]["type"], r.text
        assert events[-1] == "[DONE]"
    rows = env.gw.usage_rows("SELECT error_type FROM usage WHERE error_type LIKE 'upstream_stream_error%'",
                             until=lambda r: len(r) >= 2)
    assert sorted(r["error_type"] for r in rows) == ["upstream_stream_error:framing",
                                                     "upstream_stream_error:throttlingException"]


def test_credentials_from_an_aws_profile(env: Env) -> None:
    r = _oai(env).chat.completions.create(model="claude-profile", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "fake answer from claude-profile"
    sent = env.br.received[-1]
    assert "Credential=AKIAPROFILE/" in sent.headers["authorization"] and "x-amz-security-token" not in sent.headers


def test_prompt_cache_marks_the_system_prompt_and_the_tools(env: Env) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    r = _oai(env).chat.completions.create(model="claude-cache", tools=tools, messages=[
        {"role": "system", "content": "a long stable prompt"}, {"role": "user", "content": "weather?"}])
    assert r.choices[0].finish_reason == "tool_calls"
    sent = _last(env)
    assert sent["system"] == [{"text": "a long stable prompt"}, {"cachePoint": {"type": "default"}}]
    assert sent["toolConfig"]["tools"][-1] == {"cachePoint": {"type": "default"}}
    _oai(env).chat.completions.create(model="claude-br", tools=tools, messages=[
        {"role": "system", "content": "s"}, {"role": "user", "content": "weather?"}])
    assert "cachePoint" not in json.dumps(_last(env))  # only where the provider asks for it
