"""Prepaid credits across gateway processes sharing a real Redis: concurrent spend at the edge of
a balance (the overshoot bound of docs/credits.md), and one code redeemed by many at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from gateway.usage.client import call
from gateway.usage.codes import code_hash, new_code
from tests.credits_support import SECRETS, balance, top_up, write_bundle
from tests.fakes.redis_server import RedisServer
from tests.gateway_process import GatewayProcess
from tests.limits_support import poll

COST = Decimal("0.023")  # one chat below: ~18 prompt + 5 completion tokens at 0.001 USD


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateways (3 workers) on one ledger and one Redis; the mock answers after 800 ms, so
    a burst is in flight at once."""
    root = tmp_path_factory.mktemp("credits-redis")
    with RedisServer(root / "redis") as redis:
        policies = write_bundle(root / "policies", latency_ms=800)
        flags = ["--state-store", "redis", "--redis-url", redis.url]
        with GatewayProcess(policies, root / "data", workers=2, extra=flags) as a, \
                GatewayProcess(policies, root / "data", extra=flags) as b:
            yield a, b


def burst(gateways: tuple[GatewayProcess, ...], n: int, send: str, body: dict[str, object],
          keys: tuple[str, ...]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as http:
            return list(await asyncio.gather(*(
                http.post(f"{gateways[i % len(gateways)].url}{send}", json=body,
                          headers={"authorization": f"Bearer {SECRETS[keys[i % len(keys)]]}"})
                for i in range(n))))

    return asyncio.run(go())


def spent(gw: GatewayProcess, key: str, expected: Decimal) -> Decimal:
    """The ledger's figure once `expected` is reached (other workers' rows arrive within about a
    second), or the last one seen at the deadline."""
    seen: list[Decimal] = []

    def check() -> bool:
        seen.append(Decimal(balance(gw, key)["spent_usd"]))
        return seen[-1] >= expected

    with contextlib.suppress(AssertionError):
        poll(check, timeout=10, interval=0.2)
    return seen[-1]


def test_concurrent_spend_at_the_edge_of_a_balance(pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = pair
    credits = Decimal("0.2")  # room for 8 requests of 0.023 (0.184), not 9
    assert top_up(a, "alice", str(credits), reference="edge").status_code == 201
    chat = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    first = burst((a, b), 24, "/v1/chat/completions", chat, ("alice",))
    codes = Counter(r.status_code for r in first)
    assert codes[200] == 8 and codes[402] == 16, codes
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in first if r.status_code == 402)
    after_first = spent(a, "alice", 8 * COST)
    assert after_first == 8 * COST <= credits  # every estimate covered its request: no overshoot
    # What is left (0.016) is less than a request: one is still admitted, alone (nothing in
    # flight), and the others wait for it; then the balance is negative and all are refused.
    second = burst((b, a), 10, "/v1/chat/completions", chat, ("alice",))
    assert Counter(r.status_code for r in second) == {402: 9, 200: 1}
    total = spent(b, "alice", 9 * COST)
    assert total == 9 * COST and total - credits <= COST  # the bound: one request beyond the balance
    third = burst((a, b), 4, "/v1/chat/completions", chat, ("alice",))
    assert {r.status_code for r in third} == {402}
    assert {r.headers["x-tollgate-balance-usd"] for r in third} == {f"{credits - total:.6f}"}


def test_a_code_redeems_once_under_concurrent_attempts(pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = pair
    code = new_code()
    call(a.data_dir, {"op": "codes_add", "hashes": [code_hash(code)], "usd": "3", "batch": "race"})
    answers = burst((a, b), 12, "/v1/dashboard/redeem", {"code": code}, ("bob", "carol", "dave"))
    codes = Counter(r.status_code for r in answers)
    assert codes == {200: 1, 409: 11}, codes
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"code_already_redeemed"}
    rows = call(a.data_dir, {"op": "query", "sql": f"SELECT key_id, amount_usd FROM credits "
                                                    f"WHERE reference = 'code:{code_hash(code)}'"})["rows"]
    assert len(rows) == 1 and Decimal(str(rows[0][1])) == 3
    winner = next(r for r in answers if r.status_code == 200).json()["entry"]["key_id"]
    assert rows[0][0] == winner
