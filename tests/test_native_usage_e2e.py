"""End to end through a real gateway process (tests/native_support.py), continued: the exact
usage each client SDK sees for all nine client x upstream pairs, whole and streamed (the
upstream's numbers in the client's convention: Anthropic's input_tokens without cache reads and
writes, Gemini's promptTokenCount with them); Gemini's v1 path and JSON-array stream; Bearer
auth and anthropic-beta on /v1/messages; reasoning shown as thinking/thought; ledger rows via
the CLI."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.native_support import KEY, Native, native

__all__ = ["native"]
MODELS = ["gpt-x", "claude-x", "gemini-x"]

# what the fakes report: OpenAI 12 prompt (4 cached) / 5 out, streamed 11 (3 cached) / 5;
# Anthropic 20 uncached + 5 cache reads + 3 cache writes / 7; Gemini 21 (4 cached) / 6 + 2 thoughts
OPENAI_SEES = {  # (prompt_tokens, completion_tokens, cached_tokens)
    ("gpt-x", False): (12, 5, 4), ("gpt-x", True): (11, 5, 3),
    ("claude-x", False): (28, 7, 5), ("claude-x", True): (28, 7, 5),
    ("gemini-x", False): (21, 8, 4), ("gemini-x", True): (21, 8, 4),
}
ANTHROPIC_SEES = {  # (input_tokens, cache_read_input_tokens, cache_creation_input_tokens, output_tokens)
    ("gpt-x", False): (8, 4, 0, 5), ("gpt-x", True): (8, 3, 0, 5),
    ("claude-x", False): (20, 5, 3, 7), ("claude-x", True): (20, 5, 3, 7),
    ("gemini-x", False): (17, 4, 0, 8), ("gemini-x", True): (17, 4, 0, 8),
}
GEMINI_SEES = {  # (promptTokenCount, candidatesTokenCount, cachedContentTokenCount, thoughtsTokenCount, total)
    ("gpt-x", False): (12, 5, 4, None, 17), ("gpt-x", True): (11, 5, 3, None, 16),
    ("claude-x", False): (28, 7, 5, None, 35), ("claude-x", True): (28, 7, 5, None, 35),
    ("gemini-x", False): (21, 6, 4, 2, 29), ("gemini-x", True): (21, 6, 4, 2, 29),
}
HI: Any = [{"role": "user", "content": "hi"}]


def _gen(n: Native, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=n.gw.url, api_version=version))


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_sees_the_upstream_usage(native: Native, model: str) -> None:
    c = openai.OpenAI(base_url=f"{native.gw.url}/v1", api_key=KEY, max_retries=0)
    u = c.chat.completions.create(model=model, messages=HI).usage
    assert u is not None and u.prompt_tokens_details is not None
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == OPENAI_SEES[model, False]
    chunks = list(c.chat.completions.create(model=model, messages=HI, stream=True,
                                            stream_options={"include_usage": True}))
    u = chunks[-1].usage
    assert u is not None and u.prompt_tokens_details is not None
    assert (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) == OPENAI_SEES[model, True]


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_sees_the_upstream_usage(native: Native, model: str) -> None:
    a = anthropic.Anthropic(base_url=native.gw.url, api_key=KEY, max_retries=0)

    def seen(u: anthropic.types.Usage) -> tuple[Any, ...]:
        return u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens

    assert seen(a.messages.create(model=model, max_tokens=50, messages=HI).usage) == ANTHROPIC_SEES[model, False]
    with a.messages.stream(model=model, max_tokens=50, messages=HI) as s:
        final = s.get_final_message()
    assert seen(final.usage) == ANTHROPIC_SEES[model, True]


@pytest.mark.parametrize("model", MODELS)
def test_genai_sdk_sees_the_upstream_usage(native: Native, model: str) -> None:
    g = _gen(native)

    def seen(u: types.GenerateContentResponseUsageMetadata | None) -> tuple[Any, ...]:
        assert u is not None
        return (u.prompt_token_count, u.candidates_token_count, u.cached_content_token_count,
                u.thoughts_token_count, u.total_token_count)

    assert seen(g.models.generate_content(model=model, contents="hi").usage_metadata) == GEMINI_SEES[model, False]
    chunks = list(g.models.generate_content_stream(model=model, contents="hi"))
    assert seen(chunks[-1].usage_metadata) == GEMINI_SEES[model, True]


def test_genai_sdk_on_the_v1_path(native: Native) -> None:
    native.ge.received.clear()
    g = _gen(native, "v1")  # held: a dropped client closes its pool
    r = g.models.generate_content(model="gemini-x", contents="hi")
    assert (r.text or "").strip() == "fake answer from gemini-x"
    assert native.ge.received[-1].path == "/v1beta/models/gemini-x:generateContent"  # upstream: v1beta


@pytest.mark.parametrize("model", MODELS)
def test_stream_without_alt_sse_is_a_json_array(native: Native, model: str) -> None:
    """Gemini's REST default: a JSON array whose elements arrive as they are produced."""
    url = f"{native.gw.url}/v1beta/models/{model}:streamGenerateContent?key={KEY}"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.stream("POST", url, json=body, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        raw = b"".join(r.iter_bytes())
    docs = json.loads(raw)
    assert isinstance(docs, list) and len(docs) > 1
    assert "".join(p.get("text", "") for d in docs for c in d.get("candidates", ())
                   for p in c.get("content", {}).get("parts", ())).strip()
    assert docs[-1]["usageMetadata"]["promptTokenCount"] == GEMINI_SEES[model, True][0]


def test_anthropic_endpoint_takes_a_bearer_key_and_forwards_betas(native: Native) -> None:
    a = anthropic.Anthropic(base_url=native.gw.url, auth_token=KEY, max_retries=0)
    native.an.received.clear()
    msg = a.messages.create(model="claude-x", max_tokens=5, messages=HI,
                            extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert msg.content[0].type == "text"
    sent = native.an.received[-1].headers
    assert sent["anthropic-beta"] == "context-1m-2025-08-07" and sent["x-api-key"] == "sk-ant"
    assert KEY not in str(sent)


def test_reasoning_reaches_anthropic_and_gemini_clients(native: Native) -> None:
    answer = {"id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "gpt-x",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {
                  "role": "assistant", "reasoning_content": "Greeting.", "content": "Hello!"}}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 14, "total_tokens": 23,
                        "completion_tokens_details": {"reasoning_tokens": 10}}}
    native.oa.script("gpt-x", times=2, body=answer)
    a = anthropic.Anthropic(base_url=native.gw.url, api_key=KEY, max_retries=0)
    msg = a.messages.create(model="gpt-x", max_tokens=50, messages=HI)
    assert msg.content[0].type == "thinking" and msg.content[0].thinking == "Greeting."
    assert msg.content[1].type == "text" and msg.content[1].text == "Hello!"
    g = _gen(native)
    r = g.models.generate_content(model="gpt-x", contents="hi")
    assert r.candidates and r.candidates[0].content and r.candidates[0].content.parts
    thought, text = r.candidates[0].content.parts
    assert thought.thought and thought.text == "Greeting." and r.text == "Hello!"
    assert r.usage_metadata and r.usage_metadata.thoughts_token_count == 10


def test_ledger_rows_through_the_cli(native: Native) -> None:
    """Runs after the calls above: the translated streams are recorded with the upstream's usage."""
    sql = ("SELECT endpoint, provider, stream, prompt_tokens, completion_tokens, cached_tokens, "
           "cache_write_tokens FROM usage WHERE status = 200 AND endpoint = 'generateContent' "
           "AND stream AND provider = 'an'")
    rows = native.gw.usage_rows(sql, until=lambda rows: len(rows) >= 2)  # SDK stream, JSON-array stream
    assert len(rows) >= 2
    assert {(r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], r["cache_write_tokens"])
            for r in rows} == {(28, 7, 5, 3)}
