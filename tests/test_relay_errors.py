"""Every refusal is a clear OpenAI-shaped error with its own status and code; nothing leaks."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import KEYS
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

Ups = tuple[FakeUpstream, FakeUpstream]
CHAT = {"model": "m-a", "messages": [{"role": "user", "content": "hi"}]}


def post(gw: GatewayProcess, body: object = CHAT, key: str | None = KEYS["client"],
         path: str = "/v1/chat/completions", **kw: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        return httpx.post(gw.url + path, content=body, headers=headers, timeout=10, **kw)
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10, **kw)


def error_of(r: httpx.Response) -> dict[str, object]:
    doc = r.json()
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"message", "type", "code", "param"}
    assert "Traceback" not in r.text
    return doc["error"]


@pytest.mark.parametrize(("key", "status", "code"), [
    (None, 401, "missing_api_key"),
    ("tg-nope", 401, "invalid_api_key"),
    (KEYS["expired"], 401, "key_expired"),
    (KEYS["off"], 401, "key_disabled"),
    (KEYS["faraway"], 403, "ip_not_allowed"),
])
def test_auth_refusals(relay_gateway, key, status, code):
    r = post(relay_gateway, key=key)
    assert r.status_code == status
    assert error_of(r)["code"] == code


@pytest.mark.parametrize(("body", "status", "code", "fragment"), [
    (b"{not json", 400, "invalid_request", "not valid JSON"),
    (b"", 400, "invalid_request", "empty"),
    (b'{"model": "m-a", "messages": [{"role": "user", "content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}]}",
     400, "invalid_request", "nested too deeply"),
    ({"messages": []}, 400, "invalid_request", "model"),
    ({"model": 42, "messages": []}, 400, "invalid_request", "model"),
    ({"model": "m-a", "stream": "yes"}, 400, "invalid_request", "stream"),
    ({"model": "no-such-model", "messages": []}, 404, "model_not_found", "no-such-model"),
    ({"model": "forbidden", "messages": []}, 403, "denied_by_rule", "off limits"),
])
def test_bad_requests(relay_gateway, body, status, code, fragment):
    r = post(relay_gateway, body)
    assert r.status_code == status
    err = error_of(r)
    assert err["code"] == code and fragment in str(err["message"])


def test_model_not_allowed_for_key(relay_gateway):
    r = post(relay_gateway, {"model": "m-b", "messages": []}, key=KEYS["limited"])
    assert r.status_code == 403 and error_of(r)["code"] == "model_not_allowed"


def test_body_over_limit(relay_gateway):
    big = {"model": "m-a", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    r = post(relay_gateway, big)
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"


def test_unknown_path_is_openai_404(relay_gateway):
    r = httpx.get(relay_gateway.url + "/v1/nope")
    assert r.status_code == 404 and error_of(r)["code"] == "unknown_url"


def test_upstream_400_is_preserved_without_leaking_keys(relay_gateway, fresh: Ups):
    a, _ = fresh
    a.script("bad-request", status=400, body={"error": {
        "message": "max_tokens is too large for key sk-a1 and sk-a2", "type": "invalid_request_error"}})
    r = post(relay_gateway, {"model": "bad-request", "messages": []})
    assert r.status_code == 400
    err = error_of(r)
    assert "max_tokens is too large" in str(err["message"])
    assert "sk-a1" not in r.text and "sk-a2" not in r.text


def test_all_attempts_failed(relay_gateway, fresh: Ups):
    a, b = fresh
    a.script("shared", status=502)
    b.script("shared", status=503)
    r = post(relay_gateway, {"model": "tiered", "messages": []})
    assert r.status_code == 502
    err = error_of(r)
    assert err["code"] == "upstream_failed" and "2 upstream attempt(s) failed" in str(err["message"])


def test_upstream_429_everywhere_is_429(relay_gateway, fresh: Ups):
    a, _ = fresh
    a.script("m-a", status=429)
    r = post(relay_gateway)
    assert r.status_code == 429 and error_of(r)["code"] == "upstream_rate_limited"


def test_sdk_raises_typed_errors(relay_gateway):
    c = openai.OpenAI(base_url=f"{relay_gateway.url}/v1", api_key="tg-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="m-a", messages=[{"role": "user", "content": "x"}])
    c = openai.OpenAI(base_url=f"{relay_gateway.url}/v1", api_key=KEYS["client"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
