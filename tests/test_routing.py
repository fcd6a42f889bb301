"""Routing units: weighted shares, round robin, tiers then fallbacks, no upstream twice, and
the circuit breaker's closed -> open -> half-open -> closed cycle."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway.config import load_snapshot
from gateway.config.types import Breaker as BreakerSettings
from gateway.routing.breaker import Breaker
from gateway.routing.select import RoundRobin, candidates

BUNDLE = """schema = 1
[settings]
pricing = "lenient"
[[provider]]
id = "a"
kind = "mock"
models = ["m", "x"]
[[provider]]
id = "b"
kind = "mock"
models = ["m"]
[[provider]]
id = "c"
kind = "mock"
models = ["m", "y"]
priority = 1

[model.weighted]
targets = [{ provider = "a", model = "m", weight = 3 }, { provider = "b", model = "m", weight = 1 }]

[model.rr]
strategy = "round_robin"
targets = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }]

[model.tiered]
targets = [{ provider = "c", model = "m", priority = 5 }, { provider = "a", model = "m" }]
fallbacks = ["weighted", "y"]
"""


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    directory: Path = tmp_path_factory.mktemp("routing")
    (directory / "b.toml").write_text(BUNDLE)
    return load_snapshot(directory)


def names(snap, route: str, rng: random.Random, rr: RoundRobin) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{t.provider}/{t.model}" for t in candidates(snap, snap.routes[route], rng, rr)]


def test_weighted_shares(snap) -> None:  # type: ignore[no-untyped-def]
    rng, rr = random.Random(3), RoundRobin()
    firsts = Counter(names(snap, "weighted", rng, rr)[0] for _ in range(4000))
    assert 0.70 < firsts["a/m"] / 4000 < 0.80  # weight 3 of 4


def test_round_robin_rotates(snap) -> None:  # type: ignore[no-untyped-def]
    rng, rr = random.Random(3), RoundRobin()
    assert [names(snap, "rr", rng, rr)[0] for _ in range(4)] == ["a/m", "b/m", "a/m", "b/m"]


def test_tiers_then_fallbacks_never_the_same_upstream_twice(snap) -> None:  # type: ignore[no-untyped-def]
    order = names(snap, "tiered", random.Random(1), RoundRobin())
    assert order[0] == "a/m"  # priority 0 (a's own) before c's explicit priority 5
    assert order[1] == "c/m"
    assert order[2] == "b/m"  # the fallback alias adds only the upstream not tried yet
    assert order[3] == "c/y"
    assert len(order) == len(set(order)) == 4


def test_breaker_cycle() -> None:
    breaker = Breaker(BreakerSettings(failures=2, window_s=10, cooldown_s=0.05))
    assert breaker.allow()
    breaker.failure()
    assert breaker.state() == "closed"
    breaker.failure()
    assert breaker.state() == "open" and not breaker.allow()
    deadline = time.monotonic() + 2
    while breaker.state() != "half-open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # nobody else while it is out
    breaker.failure()  # the probe failed: open again
    assert breaker.state() == "open"
    while breaker.state() != "half-open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.allow()
    breaker.success()
    assert breaker.state() == "closed" and breaker.allow()
