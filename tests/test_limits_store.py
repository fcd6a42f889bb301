"""The two state stores have the same semantics: every test runs on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.billing.redis_store import RedisStore
from gateway.billing.store import Ask, Grant, MemoryStore, Settle, StateStore, StateUnavailable
from tests.fakes.redis_server import RedisServer

T = TypeVar("T")
_ids = itertools.count()


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
    # A fresh prefix per test: no state leaks between tests sharing the server.
    yield RedisStore(server.url, prefix=f"t{next(_ids)}:")


def run(store: StateStore, coro: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        try:
            return await coro
        finally:
            if isinstance(store, RedisStore):  # its connection pool belongs to this loop
                await store.close()
    return asyncio.run(main())


def lease() -> str:
    return f"lease-{next(_ids)}"


def test_burst_admits_exactly_the_limit(store: StateStore) -> None:
    async def go() -> list[Grant]:
        return [await store.acquire(Ask(rates=[("rpm", 5, 1)])) for _ in range(8)]

    grants = run(store, go())
    assert [g.ok for g in grants] == [True] * 5 + [False] * 3
    assert [g.remaining[0] for g in grants[:5]] == [4, 3, 2, 1, 0]
    assert grants[0].reset_ms[0] == pytest.approx(12_000, abs=50)  # one request = 60 s / 5
    refused = grants[5]
    assert (refused.failed_kind, refused.failed_index) == ("rate", 0)
    assert 11_000 < refused.retry_ms <= 12_000  # the next request fits after 1/5 of a minute


def test_big_request_needs_a_full_bucket_and_leaves_debt(store: StateStore) -> None:
    async def go() -> tuple[Grant, Grant]:
        big = await store.acquire(Ask(rates=[("tpm", 100, 250)]))
        return big, await store.acquire(Ask(rates=[("tpm", 100, 1)]))

    big, small = run(store, go())
    assert big.ok and big.remaining == [0]
    assert not small.ok and small.retry_ms == pytest.approx(250 * 600 + 600 - 60_000, abs=50)


def test_settle_refunds_unused_tokens(store: StateStore) -> None:
    async def go() -> list[bool]:
        first = await store.acquire(Ask(rates=[("tpm", 100, 80)]))
        before = await store.acquire(Ask(rates=[("tpm", 100, 80)]))  # 20 left: refused
        await store.release(Settle(tokens=[("tpm", 100, 17 - 80)]))  # used 17 of 80
        after = await store.acquire(Ask(rates=[("tpm", 100, 80)]))
        return [first.ok, before.ok, after.ok]

    assert run(store, go()) == [True, False, True]


def test_nothing_is_charged_unless_everything_passes(store: StateStore) -> None:
    async def go() -> tuple[Grant, Grant, Grant]:
        a = await store.acquire(Ask(rates=[("rpm", 10, 1)], slots=[("c", 1)], lease=lease(), lease_ms=60_000))
        b = await store.acquire(Ask(rates=[("rpm", 10, 1)], slots=[("c", 1)], lease=lease(), lease_ms=60_000))
        c = await store.acquire(Ask(rates=[("rpm", 10, 1)]))
        return a, b, c

    a, b, c = run(store, go())
    assert a.ok and a.remaining == [9]
    assert not b.ok and b.failed_kind == "slot"
    assert c.ok and c.remaining == [8]  # the refused request took no rate capacity


def test_concurrency_slots_are_released_and_leases_expire(store: StateStore) -> None:
    async def go() -> list[bool]:
        first, second = lease(), lease()
        out = [(await store.acquire(Ask(slots=[("c", 2)], lease=first, lease_ms=60_000))).ok,
               (await store.acquire(Ask(slots=[("c", 2)], lease=second, lease_ms=200))).ok,
               (await store.acquire(Ask(slots=[("c", 2)], lease=lease(), lease_ms=60_000))).ok]
        await store.release(Settle(slots=["c"], lease=first))
        out.append((await store.acquire(Ask(slots=[("c", 2)], lease=lease(), lease_ms=60_000))).ok)
        # `second` was never released (its worker "died"): its lease runs out.
        deadline = time.monotonic() + 5
        while not (await store.acquire(Ask(slots=[("c", 2)], lease=lease(), lease_ms=60_000))).ok:
            assert time.monotonic() < deadline, "an expired lease still holds its slot"
            await asyncio.sleep(0.05)
        return out

    assert run(store, go()) == [True, True, False, True]


def test_budget_admits_while_spend_is_below_it(store: StateStore) -> None:
    async def go() -> list[Grant]:
        out = []
        for _ in range(3):
            out.append(await store.acquire(Ask(budgets=[("s", 1000), ("track", -1)])))
            await store.release(Settle(spend=[("s", 600, 0), ("track", 600, 0)]))
        return out

    grants = run(store, go())
    assert [g.ok for g in grants] == [True, True, False]
    assert grants[1].spend == [600, 600]
    assert (grants[2].failed_kind, grants[2].spend[-1]) == ("budget", 1200)


def test_seed_only_sets_missing_counters_and_meters_count(store: StateStore) -> None:
    async def go() -> tuple[list[int], int, int]:
        await store.seed("s", 500, int(time.time()) + 3600)
        await store.seed("s", 900, 0)  # already there: ignored
        await store.release(Settle(spend=[("s", 5, 0)]))
        for _ in range(3):
            await store.acquire(Ask(meter="m"))
        await store.release(Settle(meter="m", meter_tokens=42))
        return await store.read(["s", "absent"], "m")

    assert run(store, go()) == ([505, 0], 3, 42)


def test_redis_down_is_reported_as_unavailable(tmp_path: Path) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{RedisServer(tmp_path).port}/0", timeout_s=0.2)
    with pytest.raises(StateUnavailable, match=r"redis at redis://127\.0\.0\.1"):
        run(dead, dead.acquire(Ask(rates=[("rpm", 1, 1)])))


def test_a_request_cancelled_during_admission_gives_back_what_it_took(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix=f"t{next(_ids)}:")

    async def go() -> None:
        ask = Ask(rates=[("rpm", 2, 1)], slots=[("c", 1)], lease=lease(), lease_ms=60_000)
        task = asyncio.create_task(store.acquire(ask))
        await asyncio.sleep(0)  # sent to Redis (or about to be)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while not (grant := await store.acquire(Ask(rates=[("rpm", 2, 1)], slots=[("c", 1)], lease=lease(),
                                                     lease_ms=60_000))).ok:
            assert time.monotonic() < deadline, "the cancelled admission kept its slot"
            await store.release(Settle(slots=["c"], lease="none"))
            await asyncio.sleep(0.02)
        assert grant.remaining == [1]  # and its request was not counted

    run(store, go())
