"""Token counting through a real gateway process: Anthropic `POST /v1/messages/count_tokens`
with the official anthropic SDK and Gemini `:countTokens` with google-genai, forwarded to a
same-family upstream (served model, provider key) or estimated locally; error shapes; and no
rpm slot taken. Every upstream is a fake on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gateway.errors import InvalidRequest
from gateway.server.count_tokens import anthropic_estimate, estimate_count, gemini_estimate
from tests.conftest import key_hash
from tests.fakes import anthropic_upstream, gemini_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

KEY, NARROW, LIMITED = "tg-count", "tg-count-narrow", "tg-count-limited"
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

[[provider]]
id = "ge"
kind = "gemini"
base_url = "{ge}"
api_keys = ["sk-gem"]
models = ["gemini-x"]

[[provider]]
id = "mk"
kind = "mock"
models = ["mock-x"]

[model.claude-alias]
targets = [{{ provider = "an", model = "claude-x" }}]

[model.gemini-alias]
targets = [{{ provider = "ge", model = "gemini-x" }}]

[[key]]
id = "count"
hash = "{h}"

[[key]]
id = "narrow"
hash = "{narrow}"
models = ["gpt-*"]

[[key]]
id = "limited"
hash = "{limited}"
limits = {{ rpm = 2 }}
"""


@dataclass
class Env:
    gw: GatewayProcess
    an: FakeAnthropic
    ge: FakeGemini


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    oa = FakeUpstream("oa").start()
    an, ge = FakeAnthropic("sk-ant"), FakeGemini("sk-gem")
    an.start()
    ge.start()
    root = tmp_path_factory.mktemp("count")
    (root / "policies").mkdir()
    text = BUNDLE.format(oa=oa.base_url, an=an.base_url, ge=ge.base_url, h=key_hash(KEY),
                         narrow=key_hash(NARROW), limited=key_hash(LIMITED))
    (root / "policies" / "bundle.toml").write_text(text)
    try:
        with GatewayProcess(root / "policies", Path(root / "data")) as gw:
            yield Env(gw, an, ge)
    finally:
        for fake in (oa, an, ge):
            fake.stop()


def _ant(env: Env, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=env.gw.url, api_key=key, max_retries=0)


def _gen(env: Env, key: str = KEY, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=env.gw.url, api_version=version))


def _count(env: Env, model: str, contents: str, key: str = KEY, version: str = "v1beta") -> int:
    client = _gen(env, key, version)  # held: a dropped genai.Client closes its connection pool
    total = client.models.count_tokens(model=model, contents=contents).total_tokens
    assert total is not None
    return total


def _msgs(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# -- forwarded to a same-family upstream -------------------------------------------------------

@pytest.mark.parametrize("model", ["claude-x", "claude-alias"])
def test_anthropic_forwarded_to_anthropic(env: Env, model: str) -> None:
    before = len(env.an.received)
    r = _ant(env).messages.count_tokens(model=model, messages=_msgs("hello there"), system="be brief")
    assert r.input_tokens == anthropic_upstream.COUNT
    seen = env.an.received[before:]
    assert [s.path for s in seen] == ["/v1/messages/count_tokens"]
    body, headers = seen[0].json(), {k.lower(): v for k, v in seen[0].headers.items()}
    assert body["model"] == "claude-x" and body["system"] == "be brief"
    assert headers["x-api-key"] == "sk-ant" and headers["anthropic-version"]
    assert KEY not in str(seen[0].headers) and "authorization" not in headers


@pytest.mark.parametrize("model", ["gemini-x", "gemini-alias"])
def test_gemini_forwarded_to_gemini(env: Env, model: str) -> None:
    before = len(env.ge.received)
    assert _count(env, model, "hello there") == gemini_upstream.COUNT
    seen = env.ge.received[before:]
    assert [s.path for s in seen] == ["/v1beta/models/gemini-x:countTokens"]
    headers = {k.lower(): v for k, v in seen[0].headers.items()}
    assert headers["x-goog-api-key"] == "sk-gem" and "authorization" not in headers
    assert KEY not in str(seen[0].headers) and KEY not in seen[0].query
    assert seen[0].json()["contents"][0]["parts"][0]["text"] == "hello there"


def test_gemini_v1_path_and_query_key(env: Env) -> None:
    assert _count(env, "gemini-x", "hi", version="v1") == gemini_upstream.COUNT
    url = f"{env.gw.url}/v1/models/gemini-x:countTokens?key={KEY}"
    r = httpx.post(url, json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert r.status_code == 200 and r.json() == {"totalTokens": gemini_upstream.COUNT}
    assert r.headers["x-tollgate-token-count"] == "upstream"


def test_gemini_generate_content_request_form(env: Env) -> None:
    before = len(env.ge.received)
    doc = {"generateContentRequest": {"model": "models/gemini-alias",
                                      "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
    r = httpx.post(f"{env.gw.url}/v1beta/models/gemini-alias:countTokens",
                   headers={"x-goog-api-key": KEY}, json=doc)
    assert r.status_code == 200 and r.json()["totalTokens"] == gemini_upstream.COUNT
    assert env.ge.received[before].json()["generateContentRequest"]["model"] == "models/gemini-x"


# -- estimated locally ----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-x", "gemini-x", "mock-x"])
def test_anthropic_estimated_cross_family(env: Env, model: str) -> None:
    before = len(env.ge.received)
    client = _ant(env)
    small = client.messages.count_tokens(model=model, messages=_msgs("hi")).input_tokens
    big = client.messages.count_tokens(model=model, messages=_msgs("hello world " * 200)).input_tokens
    tools = client.messages.count_tokens(model=model, messages=_msgs("hi"), tools=[{
        "name": "get_weather", "description": "the weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]).input_tokens
    assert 0 < small < tools and big > small + 500
    assert len(env.ge.received) == before  # never sent to a Gemini count endpoint


@pytest.mark.parametrize("model", ["gpt-x", "claude-x", "mock-x"])
def test_gemini_estimated_cross_family(env: Env, model: str) -> None:
    before = len(env.an.received)
    small, big = _count(env, model, "hi"), _count(env, model, "hello world " * 200)
    assert small > 0 and big > small + 500
    assert len(env.an.received) == before


def test_estimated_when_the_upstream_count_fails(env: Env) -> None:
    env.an.count_status = env.ge.count_status = 500
    try:
        a = httpx.post(f"{env.gw.url}/v1/messages/count_tokens", headers={"x-api-key": KEY},
                       json={"model": "claude-x", "messages": _msgs("hello")})
        g = _count(env, "gemini-x", "hello")
    finally:
        env.an.count_status = env.ge.count_status = 200
    assert a.status_code == 200 and a.headers["x-tollgate-token-count"] == "estimated"
    assert 0 < a.json()["input_tokens"] != anthropic_upstream.COUNT
    assert 0 < g != gemini_upstream.COUNT


# -- errors in each family's shape ------------------------------------------------------------

def test_anthropic_errors(env: Env) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        _ant(env).messages.count_tokens(model="nope", messages=_msgs("hi"))
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as au:
        _ant(env, "tg-wrong").messages.count_tokens(model="claude-x", messages=_msgs("hi"))
    assert au.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        _ant(env, NARROW).messages.count_tokens(model="claude-x", messages=_msgs("hi"))
    url = f"{env.gw.url}/v1/messages/count_tokens"
    for body in (b"{not json", b"[]", b'{"model": "claude-x"}', b""):
        r = httpx.post(url, headers={"authorization": f"Bearer {KEY}"}, content=body)
        assert r.status_code == 400, body
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


def test_gemini_errors(env: Env) -> None:
    with pytest.raises(genai_errors.ClientError) as nf:
        _count(env, "nope", "hi")
    assert nf.value.code == 404 and nf.value.status == "NOT_FOUND"
    with pytest.raises(genai_errors.ClientError) as au:
        _count(env, "gemini-x", "hi", key="tg-wrong")
    assert au.value.code == 401 and au.value.status == "UNAUTHENTICATED"
    with pytest.raises(genai_errors.ClientError) as pd:
        _count(env, "gemini-x", "hi", key=NARROW)
    assert pd.value.code == 403
    url = f"{env.gw.url}/v1beta/models/gemini-x:countTokens"
    for body in (b"{not json", b"[]", b'{"generationConfig": {}}', b""):
        r = httpx.post(url, headers={"x-goog-api-key": KEY}, content=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_count_verb_only_posts(env: Env) -> None:
    r = httpx.get(f"{env.gw.url}/v1beta/models/gemini-x:countTokens", headers={"x-goog-api-key": KEY})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


# -- free: no rpm slot --------------------------------------------------------------------------

def test_counting_takes_no_rpm_slot(env: Env) -> None:
    for _ in range(5):
        assert _ant(env, LIMITED).messages.count_tokens(model="mock-x", messages=_msgs("hi")).input_tokens > 0
        assert _count(env, "mock-x", "hi", key=LIMITED) > 0
    r = _ant(env, LIMITED).messages.create(model="claude-x", max_tokens=10, messages=_msgs("hi"))
    assert r.content  # the key's rpm = 2 is untouched by ten counts


# -- the ledger: one free row per count -------------------------------------------------------

def test_ledger_rows_are_free(env: Env) -> None:
    """Runs after the calls above: count rows exist, with no tokens and no cost."""
    sql = ("SELECT endpoint, provider, served_model, prompt_tokens, cost_usd, usage_source FROM usage "
           "WHERE status = 200 AND endpoint IN ('messages/count_tokens', 'countTokens')")
    rows = env.gw.usage_rows(sql, until=lambda rows: len({r["endpoint"] for r in rows}) >= 2)
    assert {r["endpoint"] for r in rows} == {"messages/count_tokens", "countTokens"}
    assert all(r["prompt_tokens"] == 0 and r["cost_usd"] is None and r["usage_source"] == "none" for r in rows)
    assert {"an", "ge"} <= {r["provider"] for r in rows}  # the forwarded ones name their upstream


# -- the estimator itself ---------------------------------------------------------------------

def test_estimator_units() -> None:
    text = anthropic_estimate({"messages": _msgs("x" * 400)})
    assert 100 < text < 120  # ceil(chars / 4) + 4 a message + 3
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    with_image = anthropic_estimate({"messages": [{"role": "user", "content": [image]}]})
    assert 1000 < with_image < 1100  # a flat cost per blob, not its base64 size
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert estimate_count([{"parts": [{"text": deep}]}]) > 0  # any depth, no RecursionError
    with pytest.raises(InvalidRequest, match=r"contents\[0\]\.parts\[0\]: expected an object"):
        gemini_estimate({"contents": [{"parts": deep}]})  # parts are objects, not lists
    with pytest.raises(InvalidRequest):
        gemini_estimate({"generationConfig": {}})


def test_deeply_nested_body_is_a_400(env: Env) -> None:
    nested = b"[" * 3000 + b"]" * 3000
    r = httpx.post(f"{env.gw.url}/v1beta/models/gemini-x:countTokens", headers={"x-goog-api-key": KEY},
                   content=b'{"contents": [{"parts": ' + nested + b"}]}")
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.post(f"{env.gw.url}/v1/messages/count_tokens", headers={"x-api-key": KEY},
                   content=b'{"model": "claude-x", "messages": [{"role": "user", "content": ' + nested + b"}]}")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
