"""OpenAI-compatible presets (gateway/core/presets.py): base URL defaults and quirks, through a
real gateway in front of a fake OpenAI-compatible upstream: DeepSeek's reasoning_content and its
cache-hit usage fields priced; Mistral, which refuses `stream_options`, never receives it and
its unasked stream usage is recorded; Moonshot's usage inside the last choice is read."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.config import BundleError, load_snapshot
from gateway.core.presets import PRESETS
from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

KEY = "tg-presets"
BUNDLE = """
schema = 1

[[provider]]
id = "ds"
kind = "openai-compatible"
preset = "deepseek"
base_url = "{url}"
api_keys = ["sk-ds"]
models = ["deepseek-reasoner"]

[[provider]]
id = "mi"
kind = "openai-compatible"
preset = "mistral"
base_url = "{url}"
api_keys = ["sk-mi"]
models = ["mistral-small-latest"]

[[provider]]
id = "mo"
kind = "openai-compatible"
preset = "moonshot"
base_url = "{url}"
api_keys = ["sk-mo"]
models = ["kimi-k2"]

[price.deepseek-reasoner]
input = 0.55
cached_input = 0.14
output = 2.19
reasoning = 3.0

[price.mistral-small-latest]
input = 0.1
output = 0.3

[price.kimi-k2]
input = 0.6
output = 2.5

[[key]]
id = "presets"
hash = "{h}"
"""
DS_USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_cache_hit_tokens": 60, "prompt_cache_miss_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 8}}
HI: Any = [{"role": "user", "content": "hi"}]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstream]]:
    fake = FakeUpstream("presets").start()
    root = tmp_path_factory.mktemp("presets")
    (root / "policies").mkdir()
    (root / "policies" / "bundle.toml").write_text(BUNDLE.format(url=fake.base_url, h=key_hash(KEY)))
    try:
        with GatewayProcess(root / "policies", root / "data") as process:
            yield process, fake
    finally:
        fake.stop()


def _client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)


def _row(gw: GatewayProcess, model: str, stream: bool) -> dict[str, Any]:
    sql = ("select prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, usage_source "
           f"from usage where served_model = '{model}' and stream = {str(stream).lower()} and status = 200")
    rows = gw.usage_rows(sql)
    assert rows, f"no usage row for {model}"
    return rows[-1]


def test_presets_fill_the_base_url_and_a_set_one_wins(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text("""schema = 1
[[provider]]
id = "ds"
kind = "openai-compatible"
preset = "deepseek"
api_keys = ["sk-x"]
[[provider]]
id = "local"
kind = "openai-compatible"
preset = "ollama"
[[provider]]
id = "own"
kind = "openai-compatible"
preset = "groq"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["sk-y"]
""")
    snap = load_snapshot(tmp_path)
    assert snap.providers["ds"].base_url == "https://api.deepseek.com/v1"
    assert snap.providers["local"].base_url == "http://localhost:11434/v1"  # local: no key needed
    assert snap.providers["own"].base_url == "http://127.0.0.1:9/v1"
    assert snap.providers["ds"].preset is PRESETS["deepseek"]


def test_a_hosted_preset_without_a_key_and_an_unknown_preset_are_bundle_errors(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text('schema = 1\n[[provider]]\nid = "m"\nkind = "openai-compatible"\n'
                                     'preset = "mistral"\n')
    with pytest.raises(BundleError, match='preset "mistral" is a hosted API: it needs at least one api_keys'):
        load_snapshot(tmp_path)
    (tmp_path / "b.toml").write_text('schema = 1\n[[provider]]\nid = "m"\nkind = "openai-compatible"\n'
                                     'preset = "mistrall"\napi_keys = ["k"]\n')
    with pytest.raises(BundleError, match="mistrall"):
        load_snapshot(tmp_path)


def test_deepseek_reasoning_content_and_cache_hits_are_passed_and_priced(
        gw: tuple[GatewayProcess, FakeUpstream]) -> None:
    process, fake = gw
    model = "deepseek-reasoner"
    fake.script(model, times=2, body={
        "id": "ds-1", "object": "chat.completion", "created": 1, "model": model, "usage": DS_USAGE,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "4", "reasoning_content": "2 plus 2 is 4"}}]})
    answer = _client(process).chat.completions.create(model=model, messages=HI)
    assert getattr(answer.choices[0].message, "reasoning_content", None) == "2 plus 2 is 4"
    assert answer.usage is not None and answer.usage.model_extra == {
        "prompt_cache_hit_tokens": 60, "prompt_cache_miss_tokens": 40}  # the upstream's bytes, as sent
    row = _row(process, model, False)
    assert (row["prompt_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == (100, 60, 8)
    # 40 uncached x 0.55 + 60 cached x 0.14 + 12 plain out x 2.19 + 8 reasoning x 3.0, per million
    assert Decimal(str(row["cost_usd"])) == Decimal("0.00008068")
    message = anthropic.Anthropic(base_url=process.url, api_key=KEY, max_retries=0).messages.create(
        model=model, max_tokens=50, messages=HI)
    assert [b.type for b in message.content] == ["thinking", "text"]  # reasoning_content as thinking
    assert message.usage.cache_read_input_tokens == 60


def test_deepseek_stream_reasoning_and_cache_hits(gw: tuple[GatewayProcess, FakeUpstream]) -> None:
    process, fake = gw
    model = "deepseek-reasoner"
    usage_chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
                   "usage": DS_USAGE}
    fake.script(model, times=1, events=[
        _chunk(model, {"role": "assistant", "reasoning_content": "thinking"}),
        _chunk(model, {"content": "4"}), _chunk(model, {}, "stop"), usage_chunk])
    chunks = list(_client(process).chat.completions.create(model=model, messages=HI, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert getattr(deltas[0], "reasoning_content", None) == "thinking"
    assert all(c.usage is None for c in chunks)  # not asked for: the usage chunk is stripped
    assert fake.received[-1].json()["stream_options"] == {"include_usage": True}
    row = _row(process, model, True)
    assert (row["cached_tokens"], row["reasoning_tokens"], row["usage_source"]) == (60, 8, "upstream")


@pytest.mark.parametrize("client_asks", [True, False])
def test_mistral_never_receives_stream_options_and_its_usage_is_recorded(
        gw: tuple[GatewayProcess, FakeUpstream], client_asks: bool) -> None:
    process, fake = gw
    model = "mistral-small-latest"
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    fake.script(model, times=1, events=[
        _chunk(model, {"role": "assistant", "content": "bonjour"}),
        {**_chunk(model, {"content": ""}, "stop"), "usage": usage}])  # Mistral: usage in the last chunk
    extra: Any = {"stream_options": {"include_usage": True}} if client_asks else {}
    before = len(fake.received)
    chunks = list(_client(process).chat.completions.create(model=model, messages=HI, stream=True, **extra))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "bonjour"
    sent = fake.received[before].json()
    assert "stream_options" not in sent and sent["stream"] is True
    row = process.usage_rows(
        f"select count(*) as n, min(prompt_tokens) as p, min(usage_source) as s from usage "
        f"where served_model = '{model}'", until=lambda r: r[0]["n"] >= (2 if not client_asks else 1))
    assert (row[0]["p"], row[0]["s"]) == (9, "upstream")


def test_moonshot_usage_inside_the_last_choice_is_read(gw: tuple[GatewayProcess, FakeUpstream]) -> None:
    process, fake = gw
    model = "kimi-k2"
    usage = {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32, "cached_tokens": 5}
    fake.script(model, times=1, events=[
        _chunk(model, {"role": "assistant", "content": "ni hao"}), _chunk(model, {}, "stop", usage=usage)])
    list(_client(process).chat.completions.create(model=model, messages=HI, stream=True))
    row = _row(process, model, True)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (19, 13, 5)
    assert row["usage_source"] == "upstream"
    # an Anthropic client's stream, translated from the same chunks, reads it too
    fake.script(model, times=1, events=[
        _chunk(model, {"role": "assistant", "content": "ni hao"}), _chunk(model, {}, "stop", usage=usage)])
    client = anthropic.Anthropic(base_url=process.url, api_key=KEY, max_retries=0)
    with client.messages.stream(model=model, max_tokens=50, messages=HI) as stream:
        final = stream.get_final_message()
    assert (final.usage.output_tokens, final.usage.cache_read_input_tokens) == (13, 5)
