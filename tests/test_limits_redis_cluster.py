"""Limits on a real Redis Cluster (three primaries): the store's semantics, limits shared by real
gateway processes, a client started on a node that does not own the slot, a slot migrated under
the client (MOVED), and the whole cluster going away."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from gateway.billing.redis_store import RedisStore, cluster_prefix
from gateway.billing.store import Ask, Grant, StateUnavailable
from tests import test_limits_store as semantics
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.redis_server import RedisCluster, RedisServer
from tests.gateway_process import GatewayProcess
from tests.limits_support import Held, burst, chat, error_code, poll, write_limits_bundle

_ids = itertools.count()
TAG = "{tollgate}"  # the hash tag of the default prefix in cluster mode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


def other_node(cluster: RedisCluster, key: str = TAG) -> int:
    owner = cluster.slot_owner(key)
    return next(port for port in cluster.ports if port != owner)


# --- keys ----------------------------------------------------------------------------------------

def test_the_prefix_becomes_one_hash_tag_for_every_key() -> None:
    assert cluster_prefix("tollgate:") == "{tollgate}:"
    assert cluster_prefix("app:{tg}:") == "app:{tg}:"  # already a hash tag: kept
    assert cluster_prefix("") == "{tollgate}:"
    assert cluster_prefix("a{}b:") == "{ab}:"  # an empty tag hashes the whole key: replaced
    prefix = cluster_prefix("tollgate:")
    # every key a script gets or builds from its KEYS (with ids that hold braces themselves)
    names = ["r:key:k}{x:requests", "c:group:g", "s:key:k:month:2026-12", "s:key:k:month:2026-12:h",
             "s:key:k:month:2026-12:z", "m:k:r:29000000", "m:{k}:t:29000001"]
    assert {key_slot((prefix + name).encode()) for name in names} == {key_slot(b"tollgate")}


# --- the store's semantics (every store test of tests/test_limits_store.py, on the cluster) ------

_CASES = {name: case for name, case in vars(semantics).items()
          if name.startswith("test_") and list(inspect.signature(case).parameters) == ["store"]}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_store_semantics_on_a_cluster(name: str, cluster: RedisCluster) -> None:
    # through a node that does not own the store's slot: redis-py's slot map routes the calls
    _CASES[name](RedisStore(cluster.url(other_node(cluster)), prefix=f"t{next(_ids)}:", cluster=True))


def run(stores: list[RedisStore], go: Callable[[], Any]) -> Any:
    async def main() -> Any:
        try:
            return await go()
        finally:
            for store in stores:
                await store.close()
    return asyncio.run(main())


def test_two_limiters_on_the_cluster_admit_exactly_the_limit_across_a_slot_move(cluster: RedisCluster) -> None:
    prefix = f"{{mv{next(_ids)}}}:"  # a slot of its own, moved by this test only
    owner = cluster.slot_owner(prefix)
    a = RedisStore(cluster.url(owner), prefix=prefix, cluster=True)
    b = RedisStore(cluster.url(other_node(cluster, prefix)), prefix=prefix, cluster=True)

    async def wave(n: int) -> list[Grant]:
        asks = [Ask(rates=[("rpm", 10, 1)], slots=[("c", 100)], lease=f"l{next(_ids)}", lease_ms=60_000)
                for _ in range(n)]
        return await asyncio.gather(*((a, b)[i % 2].acquire(ask) for i, ask in enumerate(asks)))

    async def go() -> tuple[list[Grant], list[Grant], int, int]:
        first = await wave(6)  # both clients learn the slot map: the slot is on `owner`
        before = (await a.pipe.owner()).port
        target = next(port for port in cluster.ports if port != owner)
        await asyncio.to_thread(cluster.move_slot, prefix, target)  # with the bucket's key
        second = await wave(14)  # both still send to `owner` first: MOVED, followed
        return first, second, before, (await a.pipe.owner()).port

    first, second, before, after = run([a, b], go)
    assert [g.ok for g in first] == [True] * 6
    assert sum(g.ok for g in second) == 4  # the bucket moved with its slot: exactly 10 in all
    assert (before, after) == (owner, cluster.slot_owner(prefix)) and before != after
    assert any(k.startswith(prefix) for k in cluster.keys(after))
    assert not any(k.startswith(prefix) for k in cluster.keys(before))


def test_scripts_are_loaded_again_when_the_owner_lost_them(cluster: RedisCluster) -> None:
    """As on a replica promoted by a failover: the owner answers NOSCRIPT, the calls still run."""
    import redis

    prefix = f"{{ns{next(_ids)}}}:"
    store = RedisStore(cluster.url(), prefix=prefix, cluster=True)

    async def go() -> list[Grant]:
        grants = [await store.acquire(Ask(rates=[("rpm", 3, 1)]))]
        with redis.Redis(host="127.0.0.1", port=cluster.slot_owner(prefix)) as owner:
            owner.script_flush()
        grants += await asyncio.gather(*(store.acquire(Ask(rates=[("rpm", 3, 1)])) for _ in range(4)))
        return [*grants, await store.acquire(Ask(rates=[("rpm", 3, 1)]))]

    assert [g.ok for g in run([store], go)] == [True, True, True, False, False, False]


def test_an_unreachable_cluster_is_reported_as_unavailable(tmp_path: Path) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{RedisServer(tmp_path).port}/0", timeout_s=0.2, cluster=True)
    started = time.monotonic()
    with pytest.raises(StateUnavailable, match=r"redis cluster at redis://127\.0\.0\.1"):
        run([dead], lambda: dead.acquire(Ask(rates=[("rpm", 1, 1)])))
    with pytest.raises(StateUnavailable, match=r"redis cluster at"):
        run([dead], dead.ping)
    assert time.monotonic() - started < 2


# --- real gateways -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream("limits-redis-cluster").start()
    up.script("slow-stream", chunk_delay=0.25, chunks=[f"w{i} " for i in range(40)])
    yield up
    up.stop()


def gateway(policies: Path, data: Path, url: str, workers: int = 1,
            env: dict[str, str] | None = None) -> GatewayProcess:
    return GatewayProcess(policies, data, workers=workers, env={"TOLLGATE_REDIS_CLUSTER": "true", **(env or {})},
                          extra=["--state-store", "redis", "--redis-url", url])


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, cluster: RedisCluster,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    """Two gateways on the cluster: one with two workers started on the node owning the slot,
    one started on another node."""
    root = tmp_path_factory.mktemp("pair")
    policies = write_limits_bundle(root / "policies", upstream)
    owner = cluster.url(cluster.slot_owner(TAG))
    with gateway(policies, root / "a", owner, workers=2) as a, \
            gateway(policies, root / "b", cluster.url(other_node(cluster))) as b:
        yield [a, b]


def test_rpm_is_exact_across_gateways_on_a_cluster(pair: list[GatewayProcess], cluster: RedisCluster) -> None:
    responses = burst(pair, "shared", 24)
    assert sorted(r.status_code for r in responses) == [200] * 8 + [429] * 16
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"8"}
    # every key under the one hash tag, on the node owning its slot
    owner = cluster.slot_owner(TAG)
    assert f"{TAG}:r:k:shared:requests" in cluster.keys(owner)
    assert not [k for port in cluster.ports if port != owner for k in cluster.keys(port) if TAG in k]


def test_concurrency_and_budget_on_a_cluster(pair: list[GatewayProcess]) -> None:
    a, b = pair
    held = [Held(a, "conc"), Held(b, "conc")]
    assert [h.response.status_code for h in held] == [200, 200]
    refused = chat(b, "conc")
    assert refused.status_code == 429 and error_code(refused) == "concurrency_limit_exceeded"
    held.pop(0).close()
    poll(lambda: chat(b, "conc").status_code == 200)
    held.pop().close()
    statuses = [chat(gw, "budget") for gw in (a, b, a, b)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert error_code(statuses[-1]) == "budget_exceeded"


def test_the_cluster_going_away_is_a_clear_503_and_recovers(upstream: FakeUpstream, tmp_path: Path) -> None:
    own = RedisCluster(tmp_path / "cluster").start()
    policies = write_limits_bundle(tmp_path / "policies", upstream, rules=False)
    try:
        with gateway(policies, tmp_path / "closed", own.url()) as closed, \
                gateway(policies, tmp_path / "open", own.url(), env={"TOLLGATE_REDIS_FAILURE": "open"}) as opened:
            assert chat(closed, "burst").status_code == 200
            own.stop()
            down = chat(closed, "burst")
            assert down.status_code == 503 and error_code(down) == "limits_unavailable"
            assert down.elapsed.total_seconds() < 1  # at once: every node refuses connections
            assert down.headers["retry-after"] == "1"
            assert chat(closed, "free").status_code == 200  # no limit, no state needed
            assert chat(opened, "burst").status_code == 200  # redis_failure = open: unlimited
            assert "limit state store unreachable" in closed.log()
            assert "redis cluster at redis://127.0.0.1" in closed.log()
            own.start()  # the same nodes again (their nodes-*.conf): the cluster forms again
            poll(lambda: chat(closed, "burst").status_code == 200)
    finally:
        own.stop()
