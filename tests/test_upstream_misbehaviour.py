"""Upstreams that misbehave at the byte level (tests/fakes/rogue_upstream.py): every retry is
bounded, every delivery is counted in `attempts`, a cut or malformed answer reaches the client
as an error in its own API shape (never a hang, a 500 or a traceback) and its usage row says
what the client got."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import key_hash
from tests.fakes.rogue_upstream import RogueUpstream
from tests.gateway_process import GatewayProcess

KEY = "tg-rogue"
MODELS = ["ok", "reject", "reset-reused", "head-then-reset", "head-then-stall", "html", "bad-json",
          "stream-reset", "stream-stall", "stream-echo-key"]
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
[settings.routing]
max_attempts = 3
retry_on = [429, 500, 502, 503, 504]
[settings.routing.breaker]
failures = 1000
window_s = 30
cooldown_s = 1

[[provider]]
id = "keyless"
kind = "openai-compatible"
base_url = "{url}"
models = {models}
timeouts = {{ connect = 2, read = 1, total = 4 }}

[[provider]]
id = "five-keys"
kind = "openai-compatible"
base_url = "{url}"
api_keys = ["sk-rogue-1", "sk-rogue-2", "sk-rogue-3", "sk-rogue-4", "sk-rogue-5"]
models = ["five-keys"]
model_map = {{ "five-keys" = "reject" }}  # the rogue upstream refuses model "reject"
timeouts = {{ connect = 2, read = 1, total = 4 }}

[[provider]]
id = "keyed"
kind = "openai-compatible"
base_url = "{url}"
api_keys = ["sk-rogue-secret-0123456789"]
models = ["echo-keyed"]
model_map = {{ "echo-keyed" = "stream-echo-key" }}

[price.ok]
input = 1.0
output = 2.0

[[key]]
id = "rogue-client"
hash = "{h}"
"""
HI: Any = [{"role": "user", "content": "hi"}]
TRANSPORTS = ["h1", "aiohttp", "httpx"]


@pytest.fixture(scope="module")
def rogue() -> Iterator[RogueUpstream]:
    up = RogueUpstream().start()
    yield up
    up.stop()


def _gateway(root: Path, rogue: RogueUpstream, transport: str) -> GatewayProcess:
    policies = root / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    models = "[" + ", ".join(f'"{m}"' for m in MODELS) + "]"
    (policies / "bundle.toml").write_text(BUNDLE.format(url=rogue.base_url, models=models, h=key_hash(KEY)))
    return GatewayProcess(policies, root / "data", extra=["--transport", transport])


@pytest.fixture(scope="module", params=TRANSPORTS)
def gw(request: pytest.FixtureRequest, rogue: RogueUpstream,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with _gateway(tmp_path_factory.mktemp(f"rogue-{request.param}"), rogue, request.param) as g:
        yield g


def _post(gw: GatewayProcess, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": HI, **extra},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=15)


def _row(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    rows = gw.usage_rows(f"SELECT status, error_type, attempts, cost_usd, usage_source FROM usage "
                         f"WHERE request_id = '{request_id}'")
    assert rows, f"no usage row for {request_id}"
    return rows[0]


def _openai_error(r: httpx.Response) -> dict[str, Any]:
    assert "Traceback" not in r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    return err


# -- 1. retries are bounded whatever the key state ----------------------------------------------

def test_keyless_provider_answering_401_is_tried_once(gw: GatewayProcess, rogue: RogueUpstream) -> None:
    rogue.reset()
    r = _post(gw, "reject")
    assert r.status_code == 502 and _openai_error(r)["code"] == "upstream_failed"
    assert rogue.deliveries["reject"] == 1
    assert _row(gw, r.headers["x-request-id"])["attempts"] == 1


def test_key_rotation_stops_at_max_attempts(gw: GatewayProcess, rogue: RogueUpstream) -> None:
    rogue.reset()
    r = _post(gw, "five-keys")
    assert r.status_code == 502
    assert rogue.deliveries["reject"] == 3  # five keys, but max_attempts = 3
    assert _row(gw, r.headers["x-request-id"])["attempts"] == 3


# -- 3. a body cut after the headers is a 502 with the request id, recorded as such ------------

@pytest.mark.parametrize("model", ["head-then-reset", "head-then-stall"])
def test_non_streamed_body_cut(gw: GatewayProcess, rogue: RogueUpstream, model: str) -> None:
    rogue.reset()
    r = _post(gw, model)
    assert r.status_code == 502, r.text
    err = _openai_error(r)
    assert err["code"] == "upstream_response_cut"
    request_id = r.headers["x-request-id"]
    row = _row(gw, request_id)
    assert row["status"] == 502 and row["error_type"] == "upstream_response_cut"
    assert row["cost_usd"] is None
    assert rogue.deliveries[model] == 1  # an answer was started: not retried (it may have run)
    assert "Traceback" not in gw.log()


# -- 9. a 200 that is not the API's JSON is an error, not a billed answer -----------------------

@pytest.mark.parametrize("model", ["html", "bad-json"])
def test_200_with_a_non_json_body(gw: GatewayProcess, rogue: RogueUpstream, model: str) -> None:
    r = _post(gw, model)
    assert r.status_code == 502
    assert _openai_error(r)["code"] == "upstream_bad_response"
    row = _row(gw, r.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_bad_response"
    assert row["cost_usd"] is None


def test_anthropic_client_gets_its_shape_for_a_bad_200(gw: GatewayProcess) -> None:
    a = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        a.messages.create(model="html", max_tokens=10, messages=HI)
    assert info.value.status_code == 502 and info.value.response.json()["type"] == "error"


# -- 7, 9. a stream cut or stalled mid-way ends promptly with an error event --------------------

@pytest.mark.parametrize("model", ["stream-reset", "stream-stall"])
def test_openai_stream_cut_ends_with_an_error(gw: GatewayProcess, model: str) -> None:
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0, timeout=20)
    t0 = time.monotonic()
    text = []
    with c.chat.completions.with_streaming_response.create(model=model, messages=HI, stream=True) as r:
        request_id = r.headers["x-request-id"]
        with pytest.raises(openai.APIError, match="upstream"):
            for chunk in r.parse():
                text.append(chunk.choices[0].delta.content or "")
    assert time.monotonic() - t0 < 10  # not the client's own timeout
    assert "".join(text) == "Hello there"
    row = _row(gw, request_id)
    assert row["status"] == 200 and str(row["error_type"]).startswith("upstream_stream_cut")


def test_anthropic_stream_cut_ends_with_an_error_event(gw: GatewayProcess) -> None:
    a = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=20)
    t0 = time.monotonic()
    with (a.messages.with_streaming_response.create(model="stream-reset", max_tokens=50, messages=HI,
                                                   stream=True) as r,
          pytest.raises(anthropic.APIStatusError, match="upstream")):
        for _ in r.parse():
            pass
    assert time.monotonic() - t0 < 10


def test_gemini_stream_cut_ends_with_an_error_object(gw: GatewayProcess) -> None:
    g = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta",
                                                                 timeout=20_000))
    t0 = time.monotonic()
    with pytest.raises(genai_errors.APIError, match="upstream"):
        for _ in g.models.generate_content_stream(model="stream-reset", contents="hi"):
            pass
    assert time.monotonic() - t0 < 10


def test_responses_stream_cut_ends_with_an_error_event(gw: GatewayProcess) -> None:
    with httpx.stream("POST", f"{gw.url}/v1/responses", json={"model": "stream-reset", "input": "hi",
                                                              "stream": True},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=20) as r:
        body = r.read().decode()
    assert "event: error" in body and "upstream" in body


# -- 8. a reused connection reset after the request was read is not silently resent -----------

def test_reset_of_a_reused_connection_is_counted(gw: GatewayProcess, rogue: RogueUpstream) -> None:
    assert _post(gw, "ok").status_code == 200  # leaves a keep-alive connection in the pool
    rogue.reset()
    ids = [_post(gw, "reset-reused").headers["x-request-id"] for _ in range(3)]
    attempts = sum(_row(gw, i)["attempts"] for i in ids)
    assert attempts == rogue.deliveries["reset-reused"]


def test_a_cut_stream_really_ends(gw: GatewayProcess) -> None:
    """The error event is not enough: the response itself must end (SDKs that do not raise on an
    error event wait for the end of the body)."""
    t0 = time.monotonic()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions",
                      json={"model": "stream-reset", "messages": HI, "stream": True},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=20) as r:
        body = r.read().decode()
    assert time.monotonic() - t0 < 10
    events = [e for e in body.split("\n\n") if e.strip()]
    assert '"code":"upstream_stream_cut"' in events[-1] and "[DONE]" not in body


# -- 4. credentials an upstream echoes never reach the client ------------------------------------

@pytest.mark.parametrize("client", ["openai", "anthropic", "responses"])
def test_echoed_provider_key_is_redacted_in_streams(gw: GatewayProcess, rogue: RogueUpstream, client: str) -> None:
    path, body = {
        "openai": ("/v1/chat/completions", {"model": "echo-keyed", "messages": HI, "stream": True}),
        "anthropic": ("/v1/messages", {"model": "echo-keyed", "max_tokens": 20, "messages": HI, "stream": True}),
        "responses": ("/v1/responses", {"model": "echo-keyed", "input": "hi", "stream": True}),
    }[client]
    rogue.reset()
    with httpx.stream("POST", gw.url + path, json=body, headers={"authorization": f"Bearer {KEY}"},
                      timeout=20) as r:
        text = r.read().decode()
    assert rogue.auth_seen == ["Bearer sk-rogue-secret-0123456789"]  # the upstream did get the key
    assert "sk-rogue-secret" not in text
    assert "[redacted]" in text
