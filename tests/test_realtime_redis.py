"""Realtime sessions with limits shared through a real Redis by two gateway processes: an open
session's concurrency slot is seen by the other gateway, and responses charged on one gateway
spend the budget the other one checks (limiter.charge over the Redis store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import key_hash
from tests.fakes.realtime_upstream import FakeRealtime
from tests.fakes.redis_server import RedisServer
from tests.gateway_process import GatewayProcess

BUNDLE = """
schema = 1

[[provider]]
id = "oai"
kind = "openai"
base_url = "{base}"
api_keys = ["sk-rt"]
models = ["gpt-realtime"]

[price."gpt-realtime"]
input = 4.0
cached_input = 0.4
output = 16.0
audio_input = 32.0
audio_output = 64.0

[[key]]
id = "single"
hash = "{single}"
limits = {{ concurrency = 1 }}

[[key]]
id = "budgeted"
hash = "{budgeted}"
budget = {{ usd = 0.005, period = "month" }}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    root = tmp_path_factory.mktemp("realtime-redis")
    up = FakeRealtime().start()
    policies = root / "policies"
    policies.mkdir()
    (policies / "bundle.toml").write_text(BUNDLE.format(
        base=up.base_url, single=key_hash("tg-single"), budgeted=key_hash("tg-budget")))
    with RedisServer(root / "redis") as redis:
        extra = ["--state-store", "redis", "--redis-url", redis.url]
        with GatewayProcess(policies, root / "a", extra=extra) as a, \
                GatewayProcess(policies, root / "b", extra=extra) as b:
            yield [a, b]
    up.stop()


def url(gw: GatewayProcess) -> str:
    return f"ws://127.0.0.1:{gw.port}/v1/realtime?model=gpt-realtime"


async def status(gw: GatewayProcess, key: str) -> int:
    try:
        async with websockets.connect(url(gw), additional_headers={"authorization": f"Bearer {key}"}):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def respond(ws: Any) -> str:
    await ws.send(json.dumps({"type": "response.create"}))
    async with asyncio.timeout(10):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] in ("response.done", "error"):
                return str(event["type"])


def test_a_session_on_one_gateway_holds_the_slot_on_the_other(pair: list[GatewayProcess]) -> None:
    a, b = pair

    async def run() -> tuple[int, int]:
        async with websockets.connect(url(a), additional_headers={"authorization": "Bearer tg-single"}) as ws:
            await respond(ws)
            during = await status(b, "tg-single")
        async with asyncio.timeout(10):  # gateway a frees the slot once it has seen the close
            while (after := await status(b, "tg-single")) != 101:
                await asyncio.sleep(0.05)
        return during, after

    during, after = asyncio.run(run())
    assert (during, after) == (429, 101)


def test_responses_charged_on_one_gateway_spend_the_budget_of_both(pair: list[GatewayProcess]) -> None:
    a, b = pair

    async def run() -> tuple[str, str, int]:
        async with websockets.connect(url(a), additional_headers={"authorization": "Bearer tg-budget"}) as ws:
            first, second = await respond(ws), await respond(ws)  # 0.004728 each, budget 0.005
        return first, second, await status(b, "tg-budget")

    first, second, other = asyncio.run(run())
    assert (first, second) == ("response.done", "response.done")
    assert other == 429  # gateway b reads the spend gateway a charged, from Redis
