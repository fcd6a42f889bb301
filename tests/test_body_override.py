"""Body overrides (gateway/core/body_override.py, providers/translate/shaping.py): a provider's
`body` table and the `set_body` rule action reach the upstream as configured, through a real
gateway in front of fake upstreams; without any override the client's bytes are forwarded
byte for byte; `tollgate explain --body` shows the final body; an override that can only give
an invalid body is a bundle error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from gateway.config import BundleError, load_snapshot
from gateway.core.body_override import BodyPatch
from tests.gateway_process import ROOT
from tests.native_support import KEY, Native, native_gateway

SHAPED = """
[[provider]]
id = "oa-shaped"
kind = "openai-compatible"
base_url = "{oa}"
api_keys = ["sk-oa"]
models = ["gpt-shaped"]
body = {{ set = {{ user = "gateway", response_format = {{ type = "json_object" }} }}, remove = ["logprobs", "top_logprobs"] }}

[[provider]]
id = "ge-safe"
kind = "gemini"
base_url = "{ge}"
api_keys = ["sk-gem"]
models = ["gemini-safe"]

[provider.body.set]
safetySettings = [{{ category = "HARM_CATEGORY_HARASSMENT", threshold = "BLOCK_NONE" }}]
generationConfig = {{ candidateCount = 1 }}

[[rule]]
id = "batch-is-cold"
when = 'has(request.metadata.tier) && request.metadata.tier == "batch"'
set_body = {{ temperature = 0.0, seed = 7 }}
"""
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    yield from native_gateway(tmp_path_factory, "shaped", SHAPED)


def _openai(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


def test_without_overrides_the_client_bytes_are_forwarded_untouched(shaped: Native) -> None:
    body = b'{ "messages":[{"role":"user","content":"caf\\u00e9 \xc3\xa9"}],  "model" : "gpt-x", "x_extra": [1, 2.50]}'
    answer = httpx.post(f"{shaped.gw.url}/v1/chat/completions", content=body,
                        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert shaped.oa.received[-1].body == body


def test_the_provider_body_table_is_merged_and_its_removals_dropped(shaped: Native) -> None:
    _openai(shaped).chat.completions.create(model="gpt-shaped", messages=HI, logprobs=True, top_logprobs=2,
                                            temperature=0.5)
    sent = shaped.oa.received[-1].json()
    assert sent["user"] == "gateway" and sent["response_format"] == {"type": "json_object"}
    assert "logprobs" not in sent and "top_logprobs" not in sent
    assert sent["temperature"] == 0.5 and sent["messages"] == HI and sent["model"] == "gpt-shaped"


def test_a_gemini_provider_forces_safety_settings_deep_merged(shaped: Native) -> None:
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=shaped.gw.url))
    client.models.generate_content(model="gemini-safe", contents="hi",
                                   config=types.GenerateContentConfig(temperature=0.3))
    sent = shaped.ge.received[-1].json()
    assert sent["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    assert sent["generationConfig"] == {"temperature": 0.3, "candidateCount": 1}  # merged, not replaced
    # the same override reaches the Gemini upstream of an OpenAI client, after translation
    _openai(shaped).chat.completions.create(model="gemini-safe", messages=HI, max_tokens=20)
    sent = shaped.ge.received[-1].json()
    assert sent["generationConfig"] == {"maxOutputTokens": 20, "candidateCount": 1}
    assert sent["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_a_set_body_rule_applies_only_when_it_matches(shaped: Native) -> None:
    client = _openai(shaped)
    client.chat.completions.create(model="gpt-x", messages=HI, metadata={"tier": "batch"}, temperature=0.9)
    sent = shaped.oa.received[-1].json()
    assert (sent["temperature"], sent["seed"]) == (0.0, 7)
    client.chat.completions.create(model="gpt-x", messages=HI, metadata={"tier": "live"}, temperature=0.9)
    sent = shaped.oa.received[-1].json()
    assert sent["temperature"] == 0.9 and "seed" not in sent


def test_explain_shows_the_final_upstream_body(shaped: Native) -> None:
    body = json.dumps({"model": "gpt-shaped", "messages": HI, "logprobs": True})
    done = subprocess.run([sys.executable, "-m", "gateway", "explain", "--policies", str(shaped.gw.policies),
                           "--key", "native", "--model", "gpt-shaped", "--metadata", "tier=batch", "--body", body],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("upstream body for oa-shaped/gpt-shaped"))
    final = json.loads(line.split(": ", 1)[1])
    assert final == {"model": "gpt-shaped", "messages": HI, "user": "gateway", "temperature": 0.0, "seed": 7,
                     "response_format": {"type": "json_object"}}


def test_merge_and_remove_semantics() -> None:
    patch = BodyPatch.build({"a": {"b": 1, "c": {"d": 2}}, "e": [1]}, ["x.y", "gone", "a.missing.z"])
    doc: dict[str, Any] = {"a": {"b": 0, "keep": True, "c": 5}, "x": {"y": 1, "z": 2}, "gone": 1}
    patch.apply(doc)
    assert doc == {"a": {"b": 1, "keep": True, "c": {"d": 2}}, "x": {"z": 2}, "e": [1]}
    doc["e"].append(2)  # a request's body never shares the patch's own values
    assert patch.set["e"] == [1]


@pytest.mark.parametrize(("toml", "message"), [
    ('body = { set = { messages = "hi" } }', "body: `messages` must be an array for a openai upstream, not a string"),
    ('body = { remove = ["model"] }', "body: `model` cannot be removed: a openai request needs it"),
    ('body = { set = { stream = true } }', "body: `stream` cannot be set: it follows the client's request"),
    ('body = { set = { max_tokens = "many" } }', "`max_tokens` must be an integer"),
])
def test_an_override_that_breaks_the_body_is_a_bundle_error(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "b.toml").write_text(f'schema = 1\n[[provider]]\nid = "p"\nkind = "openai-compatible"\n'
                                     f'base_url = "http://127.0.0.1:9/v1"\n{toml}\n')
    with pytest.raises(BundleError) as caught:
        load_snapshot(tmp_path)
    assert message in str(caught.value)


def test_a_rule_set_body_is_checked_against_every_family(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text('schema = 1\n[[rule]]\nid = "r"\nwhen = "true"\n'
                                     'set_body = { contents = "x", max_tokens = 1.5 }\n')
    with pytest.raises(BundleError) as caught:
        load_snapshot(tmp_path)
    text = str(caught.value)
    assert "rule 'r': set_body: `contents` must be an array for a gemini upstream" in text
    assert "`max_tokens` must be an integer for a openai upstream, not a number" in text
