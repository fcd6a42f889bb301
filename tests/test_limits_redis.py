"""Limits shared through a real Redis by several real gateway processes (and their workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.redis_server import RedisServer
from tests.gateway_process import GatewayProcess
from tests.limits_support import Held, burst, chat, error_code, poll, write_limits_bundle


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream("limits-redis").start()
    up.script("slow-stream", chunk_delay=0.25, chunks=[f"w{i} " for i in range(40)])
    yield up
    up.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def gateway(policies: Path, data: Path, redis: RedisServer, workers: int = 1,
            env: dict[str, str] | None = None) -> GatewayProcess:
    return GatewayProcess(policies, data, workers=workers, env=env,
                          extra=["--state-store", "redis", "--redis-url", redis.url])


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, redis: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    """Two gateways on one Redis: one with two workers, one with one."""
    root = tmp_path_factory.mktemp("pair")
    policies = write_limits_bundle(root / "policies", upstream)
    with gateway(policies, root / "a", redis, workers=2) as a, gateway(policies, root / "b", redis) as b:
        yield [a, b]


def test_rpm_is_exact_across_gateways_and_workers(pair: list[GatewayProcess]) -> None:
    responses = burst(pair, "shared", 24)
    assert sorted(r.status_code for r in responses) == [200] * 8 + [429] * 16
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"8"}


def test_concurrency_is_shared_and_freed(pair: list[GatewayProcess]) -> None:
    a, b = pair
    held = [Held(a, "conc"), Held(b, "conc")]
    assert [h.response.status_code for h in held] == [200, 200]
    refused = chat(b, "conc")
    assert refused.status_code == 429 and error_code(refused) == "concurrency_limit_exceeded"
    held.pop(0).close()  # a stream on gateway a ends early: gateway b may use its slot
    poll(lambda: chat(b, "conc").status_code == 200)
    held.pop().close()


def test_tpm_settles_real_usage_across_gateways(pair: list[GatewayProcess]) -> None:
    a, b = pair
    statuses = [chat(gw, "tokens", max_tokens=100).status_code for gw in (a, b) * 4]
    assert statuses == [200] * 8  # reserved ~120 of 300 each, settled at 17
    assert chat(b, "tokens", max_tokens=280).status_code == 429


def test_budget_and_rates_survive_a_gateway_restart(upstream: FakeUpstream, redis: RedisServer,
                                                    tmp_path: Path) -> None:
    policies = write_limits_bundle(tmp_path / "policies", upstream)
    with gateway(policies, tmp_path / "data", redis) as gw:
        assert [chat(gw, "budget").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [chat(gw, "burst").status_code for _ in range(5)] == [200] * 5
    with gateway(policies, tmp_path / "data", redis) as again:
        refused = chat(again, "budget")
        assert refused.status_code == 429 and error_code(refused) == "budget_exceeded"
        assert chat(again, "burst").status_code == 429


def test_redis_going_away_is_a_clear_503_and_recovers(upstream: FakeUpstream, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    policies = write_limits_bundle(tmp_path / "policies", upstream, rules=False)
    try:
        with gateway(policies, tmp_path / "closed", server) as closed, \
                gateway(policies, tmp_path / "open", server, env={"TOLLGATE_REDIS_FAILURE": "open"}) as opened:
            assert chat(closed, "burst").status_code == 200
            server.stop()
            down = chat(closed, "burst")
            assert down.status_code == 503 and error_code(down) == "limits_unavailable"
            assert "cannot reach its state store or usage ledger" in down.json()["error"]["message"]
            assert down.headers["retry-after"] == "1"
            assert chat(closed, "free").status_code == 200  # no limit, no state needed
            assert chat(opened, "burst").status_code == 200  # redis_failure = open: unlimited
            assert "limit state store unreachable" in closed.log()
            server.start()
            poll(lambda: chat(closed, "burst").status_code == 200)
    finally:
        server.stop()
