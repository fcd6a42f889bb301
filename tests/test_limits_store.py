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
            out.append(await store.acquire(Ask(budgets=[("s", 1000, 0), ("track", -1, 0)])))
            await store.release(Settle(spend=[("s", 600, 0), ("track", 600, 0)]))
        return out

    grants = run(store, go())
    assert [g.ok for g in grants] == [True, True, False]
    assert grants[1].spend == [600, 600]
    assert (grants[2].failed_kind, grants[2].spend[-1]) == ("budget", 1200)


def budget(key: str, limit: int, reserve: int, ms: int = 60_000, name: str | None = None) -> Ask:
    return Ask(budgets=[(key, limit, reserve)], lease=name or lease(), lease_ms=ms)


async def nothing_held(store: StateStore, key: str) -> bool:
    """No reservation left behind for `key` (and, in Redis, no key)."""
    if isinstance(store, MemoryStore):
        return key not in store.held and key not in store.held_sum
    assert isinstance(store, RedisStore)
    return not await store.client.exists(f"{store.prefix}{key}:h", f"{store.prefix}{key}:z")


def test_budget_reservations_count_until_settled(store: StateStore) -> None:
    async def go() -> tuple[list[Grant], list[int], bool]:
        a, b = lease(), lease()
        grants = [await store.acquire(budget("s", 1000, 400, name=a)),
                  await store.acquire(budget("s", 1000, 400, name=b)),
                  await store.acquire(budget("s", 1000, 400))]  # 0 + 800 in flight + 400 > 1000
        await store.release(Settle(spend=[("s", 100, 0)], lease=a, reservations=["s"]))  # real: 100
        grants.append(await store.acquire(budget("s", 1000, 450)))  # 100 + 400 + 450 <= 1000
        grants.append(await store.acquire(budget("s", 1000, 100)))  # 100 + 850 + 100 > 1000
        await store.release(Settle(lease=b, reservations=["s"]))  # failed: nothing spent
        await store.release(Settle(lease=b, reservations=["s"]))  # twice: no effect
        spend, _, _ = await store.read(["s"], None)
        return grants, spend, await nothing_held(store, "s")

    grants, spend, clean = run(store, go())
    assert [g.ok for g in grants] == [True, True, False, True, False]
    assert (grants[2].failed_kind, grants[2].spend, grants[2].held) == ("budget", [0], 800)
    assert (grants[4].spend, grants[4].held) == ([100], 850)
    assert spend == [100] and not clean  # the 450 reservation is still in flight


def test_a_reservation_larger_than_what_is_left_runs_alone(store: StateStore) -> None:
    async def go() -> tuple[list[Grant], bool]:
        first = lease()
        grants = [await store.acquire(budget("s", 1000, 1500, name=first)),  # nothing in flight
                  await store.acquire(budget("s", 1000, 1))]
        await store.release(Settle(spend=[("s", 1200, 0)], lease=first, reservations=["s"]))
        grants.append(await store.acquire(budget("s", 1000, 1)))  # spent: exhausted
        grants.append(await store.acquire(Ask(budgets=[("s", -1, 5)], lease=lease())))  # no budget: no hold
        return grants, await nothing_held(store, "s")

    grants, clean = run(store, go())
    assert [g.ok for g in grants] == [True, False, False, True]
    assert (grants[1].spend, grants[1].held) == ([0], 1500)
    assert (grants[2].spend, grants[2].held) == ([1200], 0)
    assert clean


def test_reservations_of_a_dead_worker_expire(store: StateStore) -> None:
    async def go() -> tuple[bool, bool, bool]:
        dead = lease()
        taken = (await store.acquire(budget("s", 1000, 900, ms=300, name=dead))).ok
        refused = not (await store.acquire(budget("s", 1000, 200))).ok
        deadline = time.monotonic() + 10
        while not (await store.acquire(budget("s", 1000, 200, name="after"))).ok:
            assert time.monotonic() < deadline, "an expired reservation still holds the budget"
            await asyncio.sleep(0.05)
        await store.release(Settle(lease=dead, reservations=["s"]))  # late settle: nothing to undo
        await store.release(Settle(lease="after", reservations=["s"]))
        return taken, refused, await nothing_held(store, "s")

    assert run(store, go()) == (True, True, True)


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


def test_a_request_cancelled_during_admission_gives_back_its_reservation(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix=f"t{next(_ids)}:")

    async def go() -> bool:
        task = asyncio.create_task(store.acquire(budget("s", 1000, 900)))
        await asyncio.sleep(0)  # sent to Redis (or about to be)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while not (await store.acquire(budget("s", 1000, 900, name="next"))).ok:  # refused: holds nothing
            assert time.monotonic() < deadline, "the cancelled admission kept its reservation"
            await asyncio.sleep(0.02)
        await store.release(Settle(lease="next", reservations=["s"]))
        return await nothing_held(store, "s")

    assert run(store, go())
