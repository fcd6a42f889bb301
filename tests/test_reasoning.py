"""Reasoning controls across API families (providers/translate/reasoning.py): OpenAI
reasoning_effort / Responses reasoning.effort <-> Anthropic thinking <-> Gemini thinkingConfig,
each pair both ways at the codec, then end to end through the official SDKs and a real gateway
in front of the fake upstreams; an alias's `reasoning` default applies when the client set
none; Gemini thoughts are billed at the reasoning price."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from gateway.providers.codecs import codec_for
from gateway.providers.translate.codec import Outgoing
from gateway.providers.translate.reasoning import BUDGETS, effort_for_budget
from tests.native_support import KEY, Native, native_gateway

ALIASES = """
[model."claude-thinking"]
targets = [{{ provider = "an", model = "claude-x" }}]
reasoning = "high"

[model."gemini-thinking"]
targets = [{{ provider = "ge", model = "gemini-x" }}]
reasoning = "low"

[model."gpt-reasoning"]
targets = [{{ provider = "oa", model = "gpt-x" }}]
reasoning = "medium"

[price.gemini-x]
input = 1.0
output = 2.0
reasoning = 5.0
"""
HI: Any = [{"role": "user", "content": "hi"}]


def _request(client: str, kind: str, body: dict[str, Any], endpoint: str = "chat/completions") -> dict[str, Any]:
    out = Outgoing(endpoint=endpoint, body=json.dumps(body).encode(), model="m", upstream_model="up",
                   stream=False, client_wants_usage=False)
    _, data = codec_for(client, kind, endpoint).request(out)
    return dict(json.loads(data))


CHAT = {"model": "m", "messages": HI}
MESSAGES = {"model": "m", "max_tokens": 1000, "messages": HI}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def _gemini(config: dict[str, Any]) -> dict[str, Any]:
    return {**GEMINI, "generationConfig": {"thinkingConfig": config}}


@pytest.mark.parametrize(("effort", "budget"), sorted(BUDGETS.items()))
def test_openai_effort_to_anthropic_thinking(effort: str, budget: int) -> None:
    sent = _request("openai", "anthropic", {**CHAT, "reasoning_effort": effort, "max_tokens": 30000,
                                            "temperature": 0.2})
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] == 30000 and "temperature" not in sent  # refused with thinking on


def test_anthropic_max_tokens_gets_room_above_the_budget_and_none_disables() -> None:
    sent = _request("openai", "anthropic", {**CHAT, "reasoning_effort": "high", "max_tokens": 500})
    assert sent["max_tokens"] == 500 + 24576
    assert _request("openai", "anthropic", {**CHAT, "reasoning_effort": "none"})["thinking"] == {"type": "disabled"}
    assert "thinking" not in _request("openai", "anthropic", CHAT)


def test_openai_effort_to_gemini_thinking_config() -> None:
    sent = _request("openai", "gemini", {**CHAT, "reasoning_effort": "low"})
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}
    sent = _request("openai", "gemini", {**CHAT, "reasoning_effort": "none"})
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 1024}, "low"), ({"type": "enabled", "budget_tokens": 10000}, "medium"),
    ({"type": "enabled", "budget_tokens": 32000}, "high"), ({"type": "adaptive"}, "medium"),
    ({"type": "disabled"}, None)])
def test_anthropic_thinking_to_openai_effort(thinking: dict[str, Any], effort: str | None) -> None:
    assert _request("anthropic", "openai", {**MESSAGES, "thinking": thinking}).get("reasoning_effort") == effort


@pytest.mark.parametrize(("config", "effort"), [
    ({"thinkingBudget": 20000}, "high"), ({"thinkingBudget": 4096}, "medium"), ({"thinkingBudget": -1}, "medium"),
    ({"thinkingLevel": "LOW"}, "low"), ({"thinkingBudget": 0}, None),
    ({"thinking_budget": 20000}, "high")])  # proto3 JSON's other spelling, as google-genai sends it
def test_gemini_thinking_config_to_openai_effort(config: dict[str, Any], effort: str | None) -> None:
    assert _request("gemini", "openai", _gemini(config), "generateContent").get("reasoning_effort") == effort


def test_anthropic_and_gemini_reach_each_other_through_the_effort() -> None:
    sent = _request("anthropic", "gemini", {**MESSAGES, "thinking": {"type": "enabled", "budget_tokens": 2048}},
                    "messages")
    assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048
    sent = _request("gemini", "anthropic", _gemini({"thinkingBudget": 24576}), "generateContent")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 24576}


def test_responses_reasoning_effort_reaches_gemini() -> None:
    body = {"model": "m", "input": "hi", "reasoning": {"effort": "high"}}
    sent = _request("openai", "gemini", body, "responses")
    assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 24576


def test_low_medium_high_survive_a_round_trip() -> None:
    assert {e: effort_for_budget(b) for e, b in BUDGETS.items()} == {
        "minimal": "low", "low": "low", "medium": "medium", "high": "high"}


# -- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    yield from native_gateway(tmp_path_factory, "reasoning", ALIASES)


def _openai(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


def test_sdk_clients_reasoning_reaches_every_upstream_family(gw: Native) -> None:
    _openai(gw).chat.completions.create(model="claude-x", messages=HI, reasoning_effort="high")
    assert gw.an.received[-1].json()["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    anthropic.Anthropic(base_url=gw.gw.url, api_key=KEY, max_retries=0).messages.create(
        model="gpt-x", max_tokens=9000, messages=HI, thinking={"type": "enabled", "budget_tokens": 5000})
    assert gw.oa.received[-1].json()["reasoning_effort"] == "medium"
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gw.gw.url))
    client.models.generate_content(model="claude-x", contents="hi", config=types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=3000)))
    assert gw.an.received[-1].json().get("thinking") == {"type": "enabled", "budget_tokens": 2048}, gw.an.received[-1].body


def test_an_alias_reasoning_default_applies_only_when_the_client_sets_none(gw: Native) -> None:
    client = _openai(gw)
    client.chat.completions.create(model="claude-thinking", messages=HI, max_tokens=100, temperature=0.5)
    sent = gw.an.received[-1].json()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert sent["max_tokens"] == 100 + 24576 and "temperature" not in sent
    client.chat.completions.create(model="claude-thinking", messages=HI, reasoning_effort="low")
    assert gw.an.received[-1].json()["thinking"]["budget_tokens"] == 2048  # the client's own wins
    client.chat.completions.create(model="gemini-thinking", messages=HI)
    assert gw.ge.received[-1].json()["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048
    anthropic.Anthropic(base_url=gw.gw.url, api_key=KEY, max_retries=0).messages.create(
        model="gpt-reasoning", max_tokens=50, messages=HI)
    assert gw.oa.received[-1].json()["reasoning_effort"] == "medium"


def test_gemini_thoughts_are_billed_at_the_reasoning_price(gw: Native) -> None:
    _openai(gw).chat.completions.create(model="gemini-x", messages=HI, user="thoughts-billing")
    rows = gw.gw.usage_rows("select reasoning_tokens, completion_tokens, cost_usd from usage "
                            "where served_model = 'gemini-x' and endpoint = 'chat/completions'")
    # 17 uncached + 4 cached at 1.0, 6 answer tokens at 2.0, 2 thought tokens at 5.0, per million
    assert (rows[0]["reasoning_tokens"], rows[0]["completion_tokens"]) == (2, 8)
    assert Decimal(str(rows[0]["cost_usd"])) == Decimal("0.000043")
