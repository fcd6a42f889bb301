"""Candidate upstreams for one request: the route's priority tiers (weighted random or round
robin inside a tier), then its fallbacks; never the same upstream twice in one request."""

from __future__ import annotations

import random
from collections.abc import Iterator

from ..config.snapshot import Route, RouteTarget, Snapshot
from .affinity import pinned_order


class RoundRobin:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, int], int] = {}

    def order(self, route: str, tier_index: int, tier: tuple[RouteTarget, ...]) -> list[RouteTarget]:
        key = (route, tier_index)
        start = self._counters.get(key, 0)
        self._counters[key] = start + 1
        n = len(tier)
        return [tier[(start + i) % n] for i in range(n)]


def weighted_order(tier: tuple[RouteTarget, ...], rng: random.Random) -> list[RouteTarget]:
    """A weighted shuffle: each next target is drawn in proportion to its weight."""
    if len(tier) == 1:
        return [tier[0]] if tier[0].weight > 0 else []
    pool = [t for t in tier if t.weight > 0]
    # Efraimidis-Spirakis: sort by u^(1/w), one pass, no repeated draws.
    return sorted(pool, key=lambda t: rng.random() ** (1.0 / t.weight), reverse=True)


def candidates(snapshot: Snapshot, route: Route, rng: random.Random, rr: RoundRobin,
               affinity: str | None = None) -> Iterator[RouteTarget]:
    """`affinity`: a hashed affinity key (affinity.py): each tier in its pinned order."""
    seen: set[tuple[str, str]] = set()  # an upstream is a provider serving a model
    for name in (route.name, *route.fallbacks):
        current = snapshot.routes[name]
        for i, tier in enumerate(current.tiers):
            if affinity is not None:
                ordered = pinned_order(tier, affinity)
            elif current.strategy == "round_robin":
                ordered = rr.order(name, i, tier)
            else:
                ordered = weighted_order(tier, rng)
            for target in ordered:
                upstream = (target.provider, target.model)
                if upstream in seen:
                    continue
                seen.add(upstream)
                yield target
