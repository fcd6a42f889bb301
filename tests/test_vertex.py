"""Google Vertex AI end to end: a real gateway process in front of the fake Vertex
(tests/fakes/vertex_upstream.py: Gemini and Anthropic publishers, and an OAuth token endpoint
that verifies the service account's signed JWT and issues 3-second tokens), through the official
openai, anthropic and google-genai SDKs. The token is refreshed in the background before it
expires; a provider whose token cannot be had fails with a clear 502, then its breaker benches it
(503)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import key_hash
from tests.fakes.vertex_upstream import FakeVertex
from tests.gateway_process import GatewayProcess

KEY = "tg-vertex"
GEMINI, CLAUDE = "gemini-2.0-flash", "claude-3-5-sonnet-v2@20241022"
LIFETIME = 3  # seconds each token lives: the gateway must refresh it during the module
BUNDLE = """
schema = 1

[settings.routing]
max_attempts = 1

[settings.routing.breaker]
failures = 2
cooldown_s = 600

[[provider]]
id = "gcp-gemini"
kind = "vertex"
project = "proj-1"
location = "us-east5"
base_url = "{vx}"
service_account_file = "{sa_file}"
models = ["gemini-v"]
model_map = {{ "gemini-v" = "{gemini}" }}

[[provider]]
id = "gcp-claude"
kind = "vertex"
publisher = "anthropic"
project = "proj-1"
location = "us-east5"
base_url = "{vx}"
service_account_json = "${{VX_TEST_SA}}"
models = ["claude-v"]
model_map = {{ "claude-v" = "{claude}" }}
default_max_tokens = 555

[[provider]]
id = "gcp-broken"
kind = "vertex"
project = "proj-1"
location = "us-east5"
base_url = "{vx}"
service_account_json = "${{VX_TEST_SA_BROKEN}}"
models = ["gemini-broken"]

[price."{gemini}"]
input = 0.1
output = 0.4

[price."{claude}"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

[price.gemini-broken]
input = 1.0

[[key]]
id = "vertex-test"
hash = "{h}"
"""
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


@dataclass
class Env:
    gw: GatewayProcess
    vx: FakeVertex


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    vx = FakeVertex("proj-1", "us-east5", token_lifetime=LIFETIME).start()
    root = tmp_path_factory.mktemp("vertex")
    (root / "policies").mkdir()
    sa_file = root / "gemini-sa.json"
    sa_file.write_text(vx.account("gemini@proj-1.iam.gserviceaccount.com"))
    (root / "policies" / "bundle.toml").write_text(BUNDLE.format(
        vx=vx.base_url, sa_file=sa_file, gemini=GEMINI, claude=CLAUDE, h=key_hash(KEY)))
    secrets = {"VX_TEST_SA": vx.account("claude@proj-1.iam.gserviceaccount.com"),
               "VX_TEST_SA_BROKEN": vx.account("broken@proj-1.iam.gserviceaccount.com", failing=True)}
    try:
        with GatewayProcess(root / "policies", Path(root / "data"), env=secrets) as gw:
            yield Env(gw, vx)
    finally:
        vx.stop()


def _oai(e: Env) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{e.gw.url}/v1", api_key=KEY, max_retries=0)


def test_gemini_publisher_through_openai_and_genai(env: Env) -> None:
    r = _oai(env).chat.completions.create(model="gemini-v", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == f"fake answer from {GEMINI}"
    call = env.vx.received[-1]
    assert call.path == f"/v1/projects/proj-1/locations/us-east5/publishers/google/models/{GEMINI}:generateContent"
    assert call.token.startswith("ya29.fake-")
    chunks = list(_oai(env).chat.completions.create(model="gemini-v", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == f"fake answer from {GEMINI}"
    assert env.vx.received[-1].path.endswith(":streamGenerateContent") and env.vx.received[-1].query == "alt=sse"
    g = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=env.gw.url))
    assert g.models.generate_content(model="gemini-v", contents="hi").text == f"fake answer from {GEMINI}"
    text = "".join(ch.text or "" for ch in g.models.generate_content_stream(model="gemini-v", contents="hi"))
    assert text.strip() == f"fake answer from {GEMINI}"


def test_anthropic_publisher_raw_predict(env: Env) -> None:
    c = anthropic.Anthropic(base_url=env.gw.url, api_key=KEY, max_retries=0)
    m = c.messages.create(model="claude-v", max_tokens=50, system="be brief",
                          messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].type == "text" and m.content[0].text == f"fake answer from {CLAUDE}"
    assert (m.usage.cache_read_input_tokens, m.usage.output_tokens) == (5, 7)
    call = env.vx.received[-1]
    assert call.path == f"/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/{CLAUDE}:rawPredict"
    assert call.body["anthropic_version"] == "vertex-2023-10-16" and "model" not in call.body
    assert call.body["system"] == "be brief"
    with c.messages.stream(model="claude-v", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream).strip() == f"fake answer from {CLAUDE}"
    assert env.vx.received[-1].path.endswith(":streamRawPredict")


def test_openai_client_to_anthropic_publisher_tools_and_image(env: Env) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = _oai(env).chat.completions.create(model="claude-v", messages=[{"role": "user", "content": "weather?"}],
                                          tools=tools)
    assert env.vx.received[-1].body["max_tokens"] == 555  # the provider's default_max_tokens
    tc = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and tc and tc[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(tc[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    content: Any = [{"type": "text", "text": "what is it?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    _oai(env).chat.completions.create(model="claude-v", messages=[{"role": "user", "content": content}])
    image = env.vx.received[-1].body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_usage_row_prices_cache_tokens(env: Env) -> None:
    _oai(env).chat.completions.create(model="claude-v", messages=[{"role": "user", "content": "ledger"}])
    rows = env.gw.usage_rows(
        "SELECT prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cost_usd FROM usage "
        f"WHERE provider = 'gcp-claude' AND served_model = '{CLAUDE}' AND status = 200")
    assert rows
    for row in rows:
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["cache_write_tokens"]) \
            == (28, 7, 5, 3)
        assert Decimal(str(row["cost_usd"])) == Decimal("0.00017775")


def test_token_is_refreshed_in_the_background(env: Env) -> None:
    _oai(env).chat.completions.create(model="gemini-v", messages=[{"role": "user", "content": "hi"}])
    first = env.vx.received[-1].token
    issued = env.vx.grants.count("gemini@proj-1.iam.gserviceaccount.com")
    # no request in between: only the background task can fetch the next token
    assert env.vx.wait_for(lambda: env.vx.grants.count("gemini@proj-1.iam.gserviceaccount.com") > issued)
    assert env.vx.wait_for(lambda: env.vx.tokens[first] <= time.monotonic(), timeout=LIFETIME + 2)
    r = _oai(env).chat.completions.create(model="gemini-v", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == f"fake answer from {GEMINI}"
    assert env.vx.received[-1].token != first  # the first token has expired by now
    assert env.vx.unauthenticated == 0  # no request ever went out with an expired token


def test_refresh_failure_is_a_clear_error_then_benched(env: Env) -> None:
    ask: Any = {"model": "gemini-broken", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as failed:
            _oai(env).chat.completions.create(**ask)
        assert failed.value.status_code == 502
        message = str(failed.value)
        assert "gcp-broken" in message and "refreshing the token failed" in message and "invalid_grant" in message
        assert "PRIVATE KEY" not in message
    with pytest.raises(openai.APIStatusError) as benched:  # the breaker opened after two failures
        _oai(env).chat.completions.create(**ask)
    assert benched.value.status_code == 503
    assert not any(c.path.endswith("gemini-broken:generateContent") for c in env.vx.received)


def test_embeddings_are_refused_in_the_clients_shape(env: Env) -> None:
    before = len(env.vx.received)
    with pytest.raises(openai.BadRequestError) as refused:
        _oai(env).embeddings.create(model="gemini-v", input="hi")
    assert refused.value.code == "unsupported_endpoint" and "Vertex AI" in str(refused.value)
    g = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=env.gw.url))
    with pytest.raises(genai_errors.ClientError) as gemini_refused:
        g.models.embed_content(model="gemini-v", contents="hi")
    assert gemini_refused.value.code == 400
    assert len(env.vx.received) == before  # nothing was sent
