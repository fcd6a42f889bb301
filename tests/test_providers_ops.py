"""Provider operations end to end, with a real gateway process, a fake upstream and a webhook
receiver: a key starts being refused (401) -> benched until a test passes -> signed alert ->
`/admin/providers` and /metrics show it -> `tollgate providers test` fails, then passes once the
upstream is fixed -> the background re-test restores the key -> alert; a breaker opens ->
alert; model drift by `tollgate providers models --check`. No secret in any output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.threaded import wait_for
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.gateway_process import ROOT, GatewayProcess

UP_KEY = "sk-up-secret-9f8e7d6c5b4a"
FLAKY_KEY = "sk-flaky-secret-0011aabb"
HOOK_SECRET = "whsec-e2e-secret-55aa"
ENV = {"UP_KEY": UP_KEY, "FLAKY_KEY": FLAKY_KEY, "HOOK_SECRET": HOOK_SECRET}
SECRETS = (UP_KEY, FLAKY_KEY, HOOK_SECRET)
CLIENT, ADMIN, PREPAID, BUDGETED = "tg-ops-client", "tg-ops-admin", "tg-ops-prepaid", "tg-ops-budgeted"

BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
[settings.routing]
max_attempts = 2
retry_on = [500, 502, 503, 504]
[settings.routing.breaker]
failures = 2
window_s = 30
cooldown_s = 60

[[provider]]
id = "up"
kind = "openai-compatible"
base_url = "{base}"
api_keys = ["${{UP_KEY}}"]
models = ["m-a", "text-embedding-3-small"]
disable_on = [401, "insufficient_quota"]
retest_every_s = 5

[[provider]]
id = "flaky"
kind = "openai-compatible"
base_url = "{base}"
api_keys = ["${{FLAKY_KEY}}"]
models = ["m-flaky"]

[[provider]]
id = "mock"
kind = "mock"
models = ["mock-small"]

[price.m-a]
input = 1.0
output = 2.0

[price.mock-small]
per_request = 0.3

[[key]]
id = "budgeted"
hash = "{budgeted}"
budget = {{ usd = 1.0, period = "day" }}

[[key]]
id = "client"
hash = "{client}"

[[key]]
id = "prepaid"
hash = "{prepaid}"
billing = "prepaid"
low_balance_usd = 5

[[admin_key]]
id = "root"
hash = "{admin}"

[[alert]]
id = "benched"
on = "key_benched"
url = "{hook}"
secret = "${{HOOK_SECRET}}"

[[alert]]
id = "restored"
on = "key_restored"
url = "{hook}"
secret = "${{HOOK_SECRET}}"
format = "slack"
text = "key {{key}} of {{provider}} is back: {{reason}}"

[[alert]]
id = "low"
on = "balance_low"
url = "{hook}"
when = "event.balance_usd < 2.0"

[[alert]]
id = "budget"
on = "budget_threshold"
url = "{hook}"
when = "event.fraction >= 0.5"
dedup_s = 0

[[alert]]
id = "reload"
on = "reload_failed"
url = "{hook}"
secret = "${{HOOK_SECRET}}"

[[alert]]
id = "breaker"
on = "breaker_open"
url = "{hook}"
when = 'event.provider == "flaky"'
"""


class ListingUpstream(FakeUpstream):
    """The fake OpenAI upstream, plus `GET /v1/models` listing `offered`."""

    offered: list[str] = ["m-a", "text-embedding-3-small"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/v1/models":
            presented = request.headers.get("authorization", "").removeprefix("Bearer ")
            if presented in self.reject_keys:
                return web.json_response({"error": {"message": f"bad key {presented}"}}, status=401)
            return web.json_response({"object": "list", "data": [{"id": m} for m in self.offered]})
        return await super()._handle(request)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, ListingUpstream, WebhookReceiver]]:
    root = tmp_path_factory.mktemp("ops")
    upstream, hook = ListingUpstream("up").start(), WebhookReceiver().start()
    policies = root / "policies"
    policies.mkdir()
    (policies / "bundle.toml").write_text(BUNDLE.format(base=upstream.base_url, hook=hook.url,
                                                        client=key_hash(CLIENT), admin=key_hash(ADMIN),
                                                        prepaid=key_hash(PREPAID), budgeted=key_hash(BUDGETED)))
    with GatewayProcess(policies, root / "data", env=ENV) as gw:
        yield gw, upstream, hook
    upstream.stop()
    hook.stop()


def chat(gw: GatewayProcess, model: str, key: str = CLIENT) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def admin(gw: GatewayProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}{path}", headers={"authorization": f"Bearer {ADMIN}"}, timeout=60, **kw)


def tollgate(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "gateway", *args, "--policies", str(gw.policies)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", **ENV})
    assert_no_secret(done.stdout + done.stderr)
    assert "Traceback" not in done.stderr
    return done


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def key_health(gw: GatewayProcess, provider: str) -> dict[str, Any]:
    r = admin(gw, "GET", "/admin/providers")
    assert r.status_code == 200
    assert_no_secret(r.text)
    [p] = [p for p in r.json()["providers"] if p["id"] == provider]
    return p


def test_refused_key_benched_alerted_tested_restored(world: tuple[GatewayProcess, ListingUpstream,
                                                                  WebhookReceiver]) -> None:
    gw, upstream, hook = world
    upstream.reject_keys.add(UP_KEY)  # the fake's 401 quotes the key it got
    r = chat(gw, "m-a")
    assert r.status_code == 502 and "refused" in r.text
    assert_no_secret(r.text)

    alert = hook.wait_for_event("key_benched")
    assert alert.signed_by(HOOK_SECRET)
    doc = alert.json()
    assert (doc["provider"], doc["key_index"], doc["key"], doc["status"]) == ("up", 0, "sk-...5b4a", 401)
    assert "Incorrect API key provided: [redacted]" in doc["reason"] and doc["until"] is None
    assert_no_secret(alert.body.decode())

    up = key_health(gw, "up")
    [key] = up["keys"]
    assert key["key"] == "sk-...5b4a" and key["benched"]["until_test"] is True
    assert key["benched"]["status"] == 401 and "[redacted]" in key["benched"]["reason"]
    assert key["requests"] >= 1 and key["errors"] >= 1 and key["p95_ms"] is not None
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'tollgate_provider_key_benched{provider="up",key_index="0"} 1' in metrics
    assert_no_secret(metrics)

    r = chat(gw, "m-a")  # benched: not even tried
    assert r.status_code in (502, 503)
    assert not any(x.headers.get("Authorization") == f"Bearer {UP_KEY}" and x.path.endswith("completions")
                   for x in upstream.received[-1:] if r.status_code == 503)

    failed = tollgate(gw, "providers", "test", "up")
    assert failed.returncode == 1 and "FAILED" in failed.stdout and "401" in failed.stdout
    assert "sk-...5b4a" in failed.stdout

    upstream.reject_keys.clear()
    passed = tollgate(gw, "providers", "test", "up", "--stream")
    assert passed.returncode == 0, passed.stdout
    assert passed.stdout.count(" ok") == 2 and "chat stream" in passed.stdout and "embeddings" in passed.stdout

    restored = hook.wait_for_event("key_restored", timeout=15)  # the background re-test, every 5 s
    assert restored.signed_by(HOOK_SECRET)
    assert restored.json() == {"text": "key sk-...5b4a of up is back: provider test passed"}
    assert wait_for(lambda: key_health(gw, "up")["keys"][0]["benched"] is None, 5)
    assert chat(gw, "m-a").status_code == 200

    r = admin(gw, "POST", "/admin/providers/up/test", json={"stream": True})
    assert r.status_code == 200 and r.json()["ok"] is True
    assert {(x["kind"], x["stream"], x["status"]) for x in r.json()["results"]} == {
        ("chat", True, 200), ("embeddings", False, 200)}
    assert_no_secret(r.text)


def test_breaker_open_alert_and_state(world: tuple[GatewayProcess, ListingUpstream, WebhookReceiver]) -> None:
    gw, upstream, hook = world
    upstream.script("m-flaky", status=500, times=10)
    for _ in range(2):
        assert chat(gw, "m-flaky").status_code == 502
    alert = hook.wait_for_event("breaker_open")
    assert alert.json()["provider"] == "flaky" and alert.json()["failures"] == 2
    assert key_health(gw, "flaky")["breaker"]["state"] == "open"
    assert 'tollgate_provider_breaker_open{provider="flaky"} 1' in httpx.get(f"{gw.url}/metrics").text


def test_admin_provider_endpoints_refuse_bad_input(world: tuple[GatewayProcess, ListingUpstream,
                                                                WebhookReceiver]) -> None:
    gw, _, _ = world
    assert httpx.get(f"{gw.url}/admin/providers").status_code == 401
    client = httpx.post(f"{gw.url}/admin/providers/up/test", headers={"authorization": f"Bearer {CLIENT}"})
    assert client.status_code == 401 and client.json()["error"]["message"]  # a client key is no admin key
    missing = admin(gw, "POST", "/admin/providers/nope/test")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "provider_not_found"
    bad = admin(gw, "POST", "/admin/providers/up/test", json={"model": 3})
    assert bad.status_code == 400 and "error" in bad.json()


def test_model_drift(world: tuple[GatewayProcess, ListingUpstream, WebhookReceiver]) -> None:
    gw, upstream, _ = world
    same = tollgate(gw, "providers", "models", "up", "--check")
    assert same.returncode == 1 and "listed without a price (1):\n  text-embedding-3-small" in same.stdout

    upstream.offered = ["m-a", "m-new", "dall-e-3"]
    drift = tollgate(gw, "providers", "models", "up", "--check", "--ignore", "dall-e*")
    assert drift.returncode == 1
    assert "not offered upstream (1):\n  text-embedding-3-small" in drift.stdout
    assert "offered upstream but not listed (1):\n  m-new" in drift.stdout
    assert 'models = ["m-a", "m-new"]' in drift.stdout and '[price."m-new"]' in drift.stdout

    r = admin(gw, "GET", "/admin/providers/up/models")
    assert r.status_code == 200 and r.json()["not_listed"] == ["dall-e-3", "m-new"]

    upstream.offered = ["m-a", "text-embedding-3-small"]
    upstream.reject_keys.add(UP_KEY)
    try:
        refused = admin(gw, "GET", "/admin/providers/up/models")
        assert refused.status_code == 502 and refused.json()["error"]["code"] == "model_list_failed"
        assert "HTTP 401" in refused.text and "[redacted]" in refused.text
        assert_no_secret(refused.text)
    finally:
        upstream.reject_keys.clear()


def test_balance_low_alert(world: tuple[GatewayProcess, ListingUpstream, WebhookReceiver]) -> None:
    gw, _, hook = world
    topped = admin(gw, "POST", "/admin/credits", json={"key": "prepaid", "usd": 1.5, "reference": "inv-1"})
    assert topped.status_code == 201, topped.text
    answer = chat(gw, "m-a", PREPAID)
    assert answer.status_code == 200 and float(answer.headers["x-tollgate-balance-usd"]) < 2.0
    alert = hook.wait_for_event("balance_low")
    doc = alert.json()
    assert (doc["key_id"], doc["threshold_usd"]) == ("prepaid", 5.0) and doc["balance_usd"] < 2.0
    assert chat(gw, "m-a", PREPAID).status_code == 200
    assert len(hook.events("balance_low")) == 1  # one per key and window (dedup_s)


def test_budget_threshold_alerts_once_per_mark(world: tuple[GatewayProcess, ListingUpstream, WebhookReceiver]) -> None:
    gw, _, hook = world
    for _ in range(4):  # $0.30 a request against $1.00 a day: seen before requests 3 and 4: 60%, 90%
        assert chat(gw, "mock-small", BUDGETED).status_code == 200
    assert wait_for(lambda: len(hook.events("budget_threshold")) == 2, 10)
    marks = sorted((d.json()["mark"], d.json()["spend_usd"]) for d in hook.events("budget_threshold"))
    assert marks == [(0.5, 0.6), (0.9, 0.9)]
    doc = hook.events("budget_threshold")[0].json()
    assert (doc["key_id"], doc["scope"], doc["budget_usd"], doc["period"]) == ("budgeted", "key `budgeted`", 1.0, "day")
    assert chat(gw, "mock-small", BUDGETED).status_code == 429  # the budget itself still refuses


def test_reload_failed_alert_and_no_secret_in_any_log(world: tuple[GatewayProcess, ListingUpstream,
                                                                   WebhookReceiver]) -> None:
    gw, _, hook = world
    broken = gw.policies / "zz-broken.toml"
    broken.write_text('schema = 1\n[[key]]\nid = "x"\n')  # a key without its hash
    try:
        alert = hook.wait_for_event("reload_failed")
        doc = alert.json()
        assert alert.signed_by(HOOK_SECRET) and doc["problems"] >= 1 and "zz-broken.toml" in doc["message"]
        assert chat(gw, "m-a").status_code == 200  # the last good bundle keeps serving
    finally:
        broken.unlink()
    log = (gw.data_dir / "alerts.jsonl").read_text()
    assert '"outcome": "delivered"' in log
    for text in (log, gw.log(), *(p.read_text() for p in (gw.data_dir / "health").glob("*.json"))):
        assert_no_secret(text)


def test_health_is_merged_across_workers(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "b.toml").write_text(f"""schema = 1
[[provider]]
id = "mock"
kind = "mock"
models = ["mock-small"]
[price.mock-small]
input = 1.0
[[key]]
id = "client"
hash = "{key_hash(CLIENT)}"
[[admin_key]]
id = "root"
hash = "{key_hash(ADMIN)}"
""")
    with GatewayProcess(policies, tmp_path / "data", workers=2) as gw:
        for _ in range(12):  # new connections: the kernel spreads them over both workers
            assert chat(gw, "mock-small").status_code == 200

        def merged() -> dict[str, Any]:
            return admin(gw, "GET", "/admin/providers").json()

        def settled() -> bool:  # counts are live; the recent summaries are up to 2 s old
            doc = merged()
            key = doc["providers"][0]["keys"][0]
            return bool(doc["workers"] == 2 and key["requests"] == 12 and key["recent_requests"] == 12)

        assert wait_for(settled, 15)
        [key] = merged()["providers"][0]["keys"]
        assert key["key"] == "(none)" and key["errors"] == 0 and key["error_rate"] == 0.0
        assert 0 < key["p50_ms"] <= key["p95_ms"]
        assert len(list((tmp_path / "data" / "health").glob("worker-*.json"))) == 2
