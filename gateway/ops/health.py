"""One worker's view of its upstreams: per provider and API key, requests in flight, recent
outcomes and latencies (counted by the attempt engine around each delivery), benched keys and the
breaker. `worker_document` turns it into plain data that health_merge.py publishes and merges
across workers. Keys are named by their index, never by their value.

Recent latencies travel as a histogram of log-spaced buckets (25% wide), so that documents stay
small and merge by adding: percentiles are the bucket's geometric middle, within ~12%. A key's
summary is recomputed at most every 2 s, so the once-a-second document walks each key's samples
every other time at most (benchmarks/bench_provider_ops.py)."""

from __future__ import annotations

import math
import os
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.snapshot import ProviderRuntime
from ..providers.keyring import KeyRing
from ..routing.breaker import Breaker

RECENT = 256  # outcomes kept per key: the sample of the error rate and the latency percentiles
WINDOW_S = 300.0  # what "recent" means
BUCKET_BASE = 1.25  # bucket i holds latencies in [1.25**i, 1.25**(i+1)) ms
BUCKETS = 56  # up to ~4 minutes; slower lands in the last one
_PER_LOG = 1 / math.log(BUCKET_BASE)
_REFRESH_S = 2.0  # a key's recent summary is at most this old


@dataclass(slots=True)
class KeyStats:
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    recent: deque[tuple[float, bool, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    summary: tuple[int, dict[str, object]] | None = None  # (time slot, the summary)


class HealthStats:
    """Counted on the request path: two clock reads and a deque append per delivery."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[tuple[str, int], KeyStats] = {}

    def begin(self, provider: str, index: int) -> KeyStats:
        stats = self._keys.get((provider, index))
        if stats is None:
            stats = self._keys[(provider, index)] = KeyStats()
        stats.in_flight += 1
        return stats

    @staticmethod
    def end(stats: KeyStats, ok: bool, started: float) -> None:
        now = time.monotonic()
        stats.in_flight -= 1
        stats.requests += 1
        if not ok:
            stats.errors += 1
        stats.recent.append((now, ok, (now - started) * 1000))

    def get(self, provider: str, index: int) -> KeyStats | None:
        return self._keys.get((provider, index))

    def error_rate(self, provider: str, window_s: float) -> tuple[int, int]:
        """(requests, errors) of a provider's keys within the last `window_s`."""
        since = time.monotonic() - window_s
        requests = errors = 0
        for (p, _), stats in self._keys.items():
            if p == provider:
                for at, ok, _ms in stats.recent:
                    if at >= since:
                        requests += 1
                        errors += not ok
        return requests, errors


def summary(stats: KeyStats | None) -> dict[str, object]:
    """Recent deliveries of a key: count, failures, latency histogram ({bucket: count})."""
    if stats is None:
        return {"n": 0, "failed": 0, "hist": {}}
    now = time.monotonic()
    slot = int(now // _REFRESH_S)
    if stats.summary is not None and stats.summary[0] == slot:
        return stats.summary[1]
    cutoff = now - WINDOW_S
    recent = [(ok, ms) for at, ok, ms in stats.recent if at >= cutoff]
    counts = Counter(0 if ms < 1.0 else min(BUCKETS - 1, int(math.log(ms) * _PER_LOG)) for _, ms in recent)
    doc: dict[str, object] = {"n": len(recent), "failed": sum(1 for ok, _ in recent if not ok),
                              "hist": {str(b): c for b, c in counts.items()}}
    stats.summary = (slot, doc)
    return doc


def bench_document(ring: KeyRing | None, index: int) -> dict[str, Any] | None:
    bench = ring.benches.get(index) if ring is not None else None
    if bench is None or bench.until <= time.monotonic():
        return None
    until = None if math.isinf(bench.until) else time.time() + (bench.until - time.monotonic())
    return {"reason": bench.reason, "status": bench.status, "since": bench.since, "until": until,
            "until_test": bench.until_test}


def worker_document(
    providers: Mapping[str, ProviderRuntime], breakers: Mapping[str, Breaker],
    rings: Mapping[str, KeyRing], stats: HealthStats,
) -> dict[str, Any]:
    """This worker's state as plain data (JSON): what health_merge.py merges."""
    now = time.time()
    doc: dict[str, Any] = {}
    for pid, provider in providers.items():
        breaker = breakers.get(pid)
        keys = {}
        for index in range(max(1, len(provider.api_keys))):
            s = stats.get(pid, index)
            keys[str(index)] = {
                "benched": bench_document(rings.get(pid), index),
                "in_flight": s.in_flight if s else 0,
                "requests": s.requests if s else 0,
                "errors": s.errors if s else 0,
                "recent": summary(s),
            }
        doc[pid] = {
            "breaker": {"state": breaker.state(), "since": breaker.since} if breaker else None,
            "keys": keys,
        }
    return {"pid": os.getpid(), "at": now, "providers": doc}
