"""Budget reservations: admission reserves a request's estimated cost, settling replaces it with
the real cost, so concurrent requests cannot overshoot a budget (docs/limits.md, "Budgets").

In-process on the limiter (memory store and a real Redis), then through real gateway processes:
one on the memory store, and two sharing a Redis, in front of an upstream that holds its answers
until the test releases them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client

from gateway.billing.limiter import EnforcingLimiter, Ticket
from gateway.billing.limits import Admission
from gateway.billing.plan import DEFAULT_OUTPUT_ALLOWANCE, MAX_OUTPUT_ALLOWANCE, NO_RESERVE
from gateway.billing.redis_store import RedisStore
from gateway.billing.store import MemoryStore, StateStore
from gateway.config import load_snapshot
from gateway.config.snapshot import Snapshot
from gateway.errors import BudgetExceeded
from gateway.usage.record import UsageRecord
from tests.conftest import key_hash
from tests.fakes.redis_server import RedisServer
from tests.gateway_process import GatewayProcess
from tests.limits_support import (
    REAL_USD,
    RESERVE_USD,
    HeldUpstream,
    fire,
    open_raw_request,
    poll,
    post_reserve,
    write_reserve_bundle,
)

_ids = itertools.count()

BUNDLE = """
schema = 1
[settings]
timezone = "UTC"
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["m-priced", "m-cheap", "m-free", "m-tiered"]

[model.mixed]
targets = [{{ provider = "mock", model = "m-cheap" }}, {{ provider = "mock", model = "m-priced" }}]

[price.m-priced]
input = 100.0
output = 200.0

[price.m-cheap]
input = 1.0
output = 2.0

[price.m-tiered]
input = 1.0
output = 2.0
per_request = 0.001
tiers = [{{ when = "tokens.prompt > 100000", input = 4.0, output = 8.0 }}]

[group.resellers]
price_multiplier = 2.0
budget = {{ usd = 1.0, period = "day" }}

[[key]]
id = "k"
hash = "{h1}"
budget = {{ usd = 0.01, period = "month" }}

[[key]]
id = "resold"
hash = "{h2}"
group = "resellers"
price_multiplier = 1.5

[[key]]
id = "unbudgeted"
hash = "{h3}"
limits = {{ rpm = 1000 }}
"""


def snapshot(tmp_path: Path) -> Snapshot:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "b.toml").write_text(BUNDLE.format(h1=key_hash("1"), h2=key_hash("2"), h3=key_hash("3")))
    return load_snapshot(tmp_path)


def record(usd: str | None) -> UsageRecord:
    now = datetime.now(UTC)
    return UsageRecord(request_id="r", started_at=now, finished_at=now, prompt_tokens=12, completion_tokens=5,
                       cost_usd=Decimal(usd) if usd is not None else None)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield RedisStore(server.url, prefix=f"rsv{next(_ids)}:")


def run(store: StateStore, coro: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            if isinstance(store, RedisStore):
                await store.close()
    return asyncio.run(main())


# --- what is reserved ---------------------------------------------------------------------------

def test_reservation_is_prompt_and_output_allowance_at_the_routes_prices(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore())
    k = snap.keys_by_id["k"]
    priced = limiter._plan(snap, k, "m-priced").reserve
    # 100 USD / M in = 100_000 nano-USD a prompt token; 200 out = 200_000 an output token
    assert priced.nanos(25, 15) == 25 * 100_000 + 15 * 200_000
    assert priced.nanos(25, 0) == 25 * 100_000 + DEFAULT_OUTPUT_ALLOWANCE * 200_000  # no max_tokens
    assert priced.nanos(0, 10**9) == MAX_OUTPUT_ALLOWANCE * 200_000  # a huge max_tokens is capped
    # an alias reserves at the most expensive of its targets
    assert limiter._plan(snap, k, "mixed").reserve == priced
    assert limiter._plan(snap, k, "m-free").reserve is NO_RESERVE  # unpriced: nothing reserved
    # tiers: the highest tier's rates; per-request prices; key x group multipliers (1.5 x 2)
    tiered = limiter._plan(snap, snap.keys_by_id["resold"], "m-tiered").reserve
    assert tiered.nanos(10, 10) == pytest.approx(3 * (10 * 4_000 + 10 * 8_000 + 1_000_000))
    # a key without a budget reserves nothing (and a key without limits is a dict lookup)
    assert limiter._plan(snap, snap.keys_by_id["unbudgeted"], "m-priced").reserve is NO_RESERVE


def test_unpriced_models_reserve_nothing_and_hold_no_state(tmp_path: Path) -> None:
    snap, store = snapshot(tmp_path), MemoryStore()
    limiter = EnforcingLimiter(store)

    async def go() -> list[Admission]:
        return [await limiter.admit(snap, snap.keys_by_id["k"], "m-free", 100, 50) for _ in range(20)]

    admissions = go_run(go())
    assert all(isinstance(a.token, Ticket) and a.token.held == [] for a in admissions)
    assert store.held == {} and store.held_sum == {}


def go_run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- admission, settlement and cancellation, on both stores -------------------------------------

def test_concurrent_admissions_stop_at_the_budget(tmp_path: Path, store: StateStore) -> None:
    """$0.01 budget, each request reserves 25 * 100_000 + 15 * 200_000 nano = $0.0055: one
    fits, a second would overshoot it. Ten at once: exactly one admitted."""
    snap = snapshot(tmp_path)
    limiter = EnforcingLimiter(store)
    k = snap.keys_by_id["k"]

    async def one() -> Admission | BudgetExceeded:
        try:
            return await limiter.admit(snap, k, "m-priced", 25 + 15, 15)
        except BudgetExceeded as exc:
            return exc

    async def go() -> tuple[list[Any], list[int], Any, list[int]]:
        out = await asyncio.gather(*(one() for _ in range(10)))
        admitted = [a for a in out if isinstance(a, Admission)]
        await limiter.settle(admitted[0], record("0.0017"))  # real cost, not the 0.0055 estimate
        spend, _, _ = await store.read([admitted[0].token.spend_keys[0][0]], None)
        # with nothing in flight and $0.0017 spent, the next request is admitted: the
        # reservation was replaced by the real cost
        again = await one()
        after = await one()  # 0.0017 + 0.0055 in flight + 0.0055 > 0.01
        assert isinstance(again, Admission)
        await limiter.settle(again, record(None))  # failed upstream: nothing spent
        final, _, _ = await store.read([admitted[0].token.spend_keys[0][0]], None)
        return out, spend, after, final

    out, spend, after, final = run(store, go())
    assert sum(isinstance(a, Admission) for a in out) == 1
    refused = [a for a in out if isinstance(a, BudgetExceeded)]
    assert len(refused) == 9 and all(r.code == "budget_exceeded" and r.status == 429 for r in refused)
    assert "$0.0055 is reserved by requests in flight and this request reserves $0.0055" in refused[0].message
    assert "spent $0.00 of $0.01 this month" in refused[0].message
    assert spend == [1_700_000]
    assert isinstance(after, BudgetExceeded) and "spent $0.0017 of $0.01" in after.message
    assert final == [1_700_000]


def test_a_cancelled_request_releases_its_reservation(tmp_path: Path, store: StateStore) -> None:
    snap = snapshot(tmp_path)
    limiter = EnforcingLimiter(store)
    k = snap.keys_by_id["k"]

    async def go() -> tuple[bool, bool, list[int]]:
        first = await limiter.admit(snap, k, "m-priced", 40, 15)
        with pytest.raises(BudgetExceeded):
            await limiter.admit(snap, k, "m-priced", 40, 15)
        # the handler settles a cancelled request with what it used (nothing relayed: no cost)
        await limiter.settle(first, record(None))
        second = await limiter.admit(snap, k, "m-priced", 40, 15)
        key = second.token.spend_keys[0][0]
        await limiter.settle(second, record("0"))
        spend, _, _ = await store.read([key], None)
        if isinstance(store, MemoryStore):
            clean = store.held == {} and store.held_sum == {}
        else:
            clean = not await store.client.exists(f"{store.prefix}{key}:h", f"{store.prefix}{key}:z")
        return isinstance(second, Admission), clean, spend

    assert run(store, go()) == (True, True, [0])


class Ledger:
    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal:
        return Decimal("0.0042")


def test_reservations_add_to_spend_seeded_from_the_ledger(tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    limiter = EnforcingLimiter(MemoryStore(), spend_source=Ledger())
    k = snap.keys_by_id["k"]

    async def go() -> BudgetExceeded:
        await limiter.admit(snap, k, "m-priced", 40, 15)  # 0.0042 + 0.0055 <= 0.01
        with pytest.raises(BudgetExceeded) as refused:
            await limiter.admit(snap, k, "m-priced", 40, 15)
        return refused.value

    assert "spent $0.0042 of $0.01 this month, $0.0055 is reserved" in go_run(go()).message


# --- real gateways ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held() -> Iterator[HeldUpstream]:
    up = HeldUpstream().start()
    yield up
    up.stop()


def _burst(urls: list[str], held: HeldUpstream, key: str) -> None:
    """10 concurrent requests of $0.004 (real cost $0.0017) against a $0.01 budget."""
    held.hold()
    before = held.arrived
    futures = fire(urls, key, 10)
    # every request is either refused (answered) or held at the upstream
    poll(lambda: sum(f.done() for f in futures) + held.arrived - before == 10, timeout=30)
    admitted = held.arrived - before
    assert admitted == 2  # 0.004 + 0.004 fit in 0.01; a third would need 0.012
    done = [f for f in futures if f.done()]
    refused = [f.result() for f in done]
    assert len(refused) == 8 and {r.status_code for r in refused} == {429}
    body = refused[0].json()["error"]
    assert body["code"] == "budget_exceeded" and body["type"] == "insufficient_quota"
    assert "is reserved by requests in flight" in body["message"]
    held.release()
    answered = [f.result(timeout=30) for f in futures if f not in done]
    assert sorted(r.status_code for r in answered) == [200, 200]
    # settled at the real cost: 2 x 0.0017 spent, so a request now fits (0.0034 + 0.004)
    held.hold()
    futures = fire(urls, key, 1)
    poll(lambda: held.arrived - before == 3)
    # ... and the spend the next request sees is the real cost, not the two estimates (0.008)
    refused_next = post_reserve(urls[-1], key)
    assert refused_next.status_code == 429
    message = refused_next.json()["error"]["message"]
    assert f"spent ${2 * REAL_USD:.4f} of $0.01 this month, ${RESERVE_USD} is reserved" in message
    held.release()
    assert futures[0].result(timeout=30).status_code == 200


@pytest.fixture(scope="module")
def memory_gateway(held: HeldUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("reserve")
    with GatewayProcess(write_reserve_bundle(root / "policies", held), root / "data") as gw:
        yield gw


def test_gateway_admits_only_what_the_budget_allows(memory_gateway: GatewayProcess, held: HeldUpstream) -> None:
    _burst([memory_gateway.url], held, "burst")


def test_gateway_releases_the_reservation_of_a_cancelled_request(memory_gateway: GatewayProcess,
                                                                   held: HeldUpstream) -> None:
    held.hold()
    before, gone = held.arrived, held.disconnects
    first, second = open_raw_request(memory_gateway.url, "cancel"), open_raw_request(memory_gateway.url, "cancel")
    poll(lambda: held.arrived - before == 2)  # $0.008 reserved of $0.01
    assert post_reserve(memory_gateway.url, "cancel").status_code == 429
    first.close()  # the client goes away: its request is cancelled, its reservation released
    poll(lambda: held.disconnects - gone == 1)

    def admitted() -> Future[httpx.Response] | None:
        """One request; it is admitted when it reaches the (holding) upstream, not answered."""
        attempt = fire([memory_gateway.url], "cancel", 1)[0]
        poll(lambda: attempt.done() or held.arrived - before == 3)
        return None if attempt.done() else attempt

    third = poll(admitted)  # once the gateway has settled the cancelled request
    held.release()
    assert third.result(timeout=30).status_code == 200
    second.close()


def test_two_gateways_on_one_redis_share_reservations(held: HeldUpstream, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        policies = write_reserve_bundle(tmp_path / "policies", held)
        extra = ["--state-store", "redis", "--redis-url", redis.url]
        with GatewayProcess(policies, tmp_path / "a", extra=extra) as a, \
                GatewayProcess(policies, tmp_path / "b", extra=extra) as b:
            _burst([a.url, b.url], held, "settle")
            # nothing left in flight: no reservation state remains in Redis
            client = redis_client.Redis.from_url(redis.url)
            poll(lambda: not client.keys("*s:key:settle:*:[hz]"))
            assert client.keys("*s:key:settle:month:*") != []  # the spend counter itself
            client.close()
