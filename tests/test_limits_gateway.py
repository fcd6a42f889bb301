"""Limits through a real gateway process (memory store, one worker) to a fake upstream."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import ROOT, GatewayProcess
from tests.limits_support import (
    COST,
    TOKENS,
    Held,
    burst,
    chat,
    client,
    error_code,
    poll,
    write_limits_bundle,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream("limits").start()
    up.script("slow-stream", chunk_delay=0.25, chunks=[f"w{i} " for i in range(40)])  # ~10 s
    up.script("bad-request", status=400)
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("limits")
    with GatewayProcess(write_limits_bundle(root / "policies", upstream), root / "data") as gw:
        yield gw


def test_burst_admits_exactly_rpm(gateway: GatewayProcess) -> None:
    responses = burst([gateway], "burst", 12)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(ok), len(refused)) == (5, 7)
    assert {r.headers["x-ratelimit-limit-requests"] for r in ok} == {"5"}
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == [0, 1, 2, 3, 4]
    err = refused[0]
    assert error_code(err) == "rate_limit_exceeded"
    assert "key `burst`: 5 requests per minute (rpm)" in err.json()["error"]["message"]
    assert 1 <= int(err.headers["retry-after"]) <= 12
    assert err.headers["x-ratelimit-remaining-requests"] == "0"


def test_sdk_sees_rate_limit_error(gateway: GatewayProcess) -> None:
    sdk = client(gateway, "model_capped")
    sdk.chat.completions.create(model="m-b", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="m-b", messages=[{"role": "user", "content": "hi"}])
    assert "key `model-capped` on model `m-b`" in refused.value.message
    assert chat(gateway, "model_capped", "m-a").status_code == 200  # other models are not capped


def test_group_limit_is_shared_by_its_keys(gateway: GatewayProcess) -> None:
    statuses = [chat(gateway, name).status_code for name in ("pair_1", "pair_2") * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert "group `pair`" in chat(gateway, "pair_1").json()["error"]["message"]


def test_tpm_reserves_the_estimate_and_settles_real_usage(gateway: GatewayProcess) -> None:
    # Each request reserves ~20 prompt + 100 output tokens against 300 tpm but uses 17: without
    # settling, the third request would be refused; with it, eight fit.
    first = chat(gateway, "tokens", max_tokens=100)
    reserve = 300 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert 100 < reserve < 140
    responses = [chat(gateway, "tokens", max_tokens=100) for _ in range(7)]
    assert [r.status_code for r in responses] == [200] * 7
    remaining = int(responses[-1].headers["x-ratelimit-remaining-tokens"])
    floor = 300 - 7 * TOKENS - reserve  # plus what refilled meanwhile (5 tokens a second)
    assert floor <= remaining <= floor + 30
    assert chat(gateway, "tokens", max_tokens=280).status_code == 429


def test_concurrency_holds_for_long_streams_and_frees_on_cancel(gateway: GatewayProcess) -> None:
    held = [Held(gateway, "conc") for _ in range(2)]
    assert [h.response.status_code for h in held] == [200, 200]
    third = chat(gateway, "conc")
    assert third.status_code == 429 and error_code(third) == "concurrency_limit_exceeded"
    assert "at most 2 at a time" in third.json()["error"]["message"]
    held.pop().close()  # the client goes away mid-stream: its slot comes back
    poll(lambda: chat(gateway, "conc").status_code == 200)
    assert chat(gateway, "conc").status_code == 200
    held.pop().close()


def test_failed_requests_free_their_slot(gateway: GatewayProcess) -> None:
    statuses = [chat(gateway, "conc", "bad-request").status_code for _ in range(4)]
    assert 429 not in statuses
    poll(lambda: chat(gateway, "conc").status_code == 200)


def test_budget_is_exhausted_once_spend_is_recorded(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    served = 0
    sdk = client(gateway, "budget", retries=2)  # x-should-retry: false stops the SDK retrying
    with pytest.raises(openai.RateLimitError) as refused:
        for _ in range(10):
            sdk.chat.completions.create(model="m-a", messages=[{"role": "user", "content": "hi"}])
            served += 1
    assert served == 3  # 0.000022 USD each against 0.00005: the third crosses it
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "budget_exceeded"
    assert f"key `budget`: spent ${3 * COST:.6f} of $0.00005 this month (resets 20" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"


def clear_of_a_minute_boundary(margin_s: float = 10.0) -> None:
    """`usage.rpm` is a sliding estimate over wall-clock minutes (billing/store.py `sliding`):
    requests on both sides of a minute's end count for a little less than their number."""
    left = 60.0 - time.time() % 60.0
    if left < margin_s:
        time.sleep(left + 0.05)


def test_rules_read_usage(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    # 0.0001 USD a day: after two requests (0.000044) the budget is 44% used, so the
    # `half-budget` rule moves the key to m-b; the third request in a minute trips `busy`.
    clear_of_a_minute_boundary()
    models = []
    for _ in range(3):
        response = chat(gateway, "ruled")
        models.append(response.json().get("model") if response.status_code == 200 else response.status_code)
    assert models == ["m-a", "m-a", "m-b"]
    denied = chat(gateway, "ruled")
    assert denied.status_code == 403 and "slow down" in denied.json()["error"]["message"]


def test_keys_without_limits_get_no_headers(gateway: GatewayProcess) -> None:
    response = chat(gateway, "free")
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("x-ratelimit")]


def test_several_workers_need_redis(upstream: FakeUpstream, tmp_path: Path) -> None:
    policies = write_limits_bundle(tmp_path / "policies", upstream)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--policies", str(policies), "--data-dir",
         str(tmp_path / "data"), "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'state_store = "memory"' in result.stderr and "--state-store redis" in result.stderr


def test_budget_survives_a_restart_through_the_usage_ledger(upstream: FakeUpstream, tmp_path: Path) -> None:
    # Memory state dies with the process; the next one seeds the budget from the DuckDB ledger.
    policies = write_limits_bundle(tmp_path / "policies", upstream, rules=False)
    with GatewayProcess(policies, tmp_path / "data") as gw:
        assert [chat(gw, "budget").status_code for _ in range(4)] == [200, 200, 200, 429]
    with GatewayProcess(policies, tmp_path / "data") as again:
        # While the ledger cannot answer, a budgeted key gets 503, never a budget counted from zero.
        refused = poll(lambda: (r := chat(again, "budget")).status_code != 503 and r)
        assert refused.status_code == 429 and error_code(refused) == "budget_exceeded"
        assert f"spent ${3 * COST:.6f}" in refused.json()["error"]["message"]
