"""A gateway process in front of three fake upstreams, one per API family: `gpt-x` on an
OpenAI-compatible fake, `claude-x` on the fake Anthropic, `gemini-x` on the fake Gemini."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import key_hash
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

KEY = "tg-native"
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "oa"
kind = "openai-compatible"
base_url = "{oa}"
api_keys = ["sk-oa"]
models = ["gpt-x"]

[[provider]]
id = "an"
kind = "anthropic"
base_url = "{an}"
api_keys = ["sk-ant"]
models = ["claude-x"]
default_max_tokens = 777

[[provider]]
id = "ge"
kind = "gemini"
base_url = "{ge}"
api_keys = ["sk-gem"]
models = ["gemini-x"]

[price.claude-x]
input = 1.0
output = 2.0

[[key]]
id = "native"
hash = "{h}"
"""


@dataclass
class Native:
    gw: GatewayProcess
    oa: FakeUpstream
    an: FakeAnthropic
    ge: FakeGemini


def script_openai_tool_call(n: Native) -> None:
    """gpt-x answers the next chat request once with a get_weather(city=Paris) tool call."""
    n.oa.script("gpt-x", times=1, body={
        "id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}})


def native_gateway(tmp_path_factory: pytest.TempPathFactory, name: str = "native",
                   extra: str = "") -> Iterator[Native]:
    """A gateway on BUNDLE (+ `extra` TOML, same placeholders) in front of the three fake upstreams."""
    oa = FakeUpstream("oa").start()
    an, ge = FakeAnthropic("sk-ant"), FakeGemini("sk-gem")
    an.start()
    ge.start()
    root = tmp_path_factory.mktemp(name)
    (root / "policies").mkdir()
    text = (BUNDLE + extra).format(oa=oa.base_url, an=an.base_url, ge=ge.base_url, h=key_hash(KEY))
    (root / "policies" / "bundle.toml").write_text(text)
    try:
        with GatewayProcess(root / "policies", Path(root / "data")) as gw:
            yield Native(gw, oa, an, ge)
    finally:
        for fake in (oa, an, ge):
            fake.stop()


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    yield from native_gateway(tmp_path_factory)
