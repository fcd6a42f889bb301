"""What provider operations cost: on the request path, the per-delivery health count (two clock
reads and a deque append, server/attempts.py) and an alert event queued (`Dispatcher.emit`);
off it, once a second per worker, building and publishing the health document, and merging the
workers' documents for `GET /admin/providers`.

    .venv/bin/python -m benchmarks.bench_provider_ops [--providers 20 --keys 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.alerts.dispatcher import Dispatcher
from gateway.alerts.events import key_event
from gateway.alerts.log import AlertLog, Dedup
from gateway.config import load_snapshot
from gateway.ops.health import HealthStats, worker_document
from gateway.ops.health_merge import merged_health, publish, read_documents
from gateway.providers.keyring import KeyRing
from gateway.providers.transport.h1client import H1Client
from gateway.routing.breaker import Breakers


def per_call_ns(fn: object, n: int) -> float:
    call = fn  # type: ignore[assignment]
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(n):
            call()  # type: ignore[operator]
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--providers", type=int, default=20)
    ap.add_argument("--keys", type=int, default=4)
    args = ap.parse_args()

    stats = HealthStats()
    count = per_call_ns(lambda: HealthStats.end(stats.begin("p", 0), True, time.monotonic()), 200_000)
    clocks = per_call_ns(lambda: (time.monotonic(), time.monotonic()), 200_000)
    print(f"health count per delivery: {count:.0f} ns (of which the clock reads: {clocks:.0f} ns)")

    async def emit_cost() -> float:
        d = Dispatcher(lambda: (), lambda: None, H1Client(1), AlertLog(None), Dedup(None))  # type: ignore[arg-type,return-value]
        event = key_event("key_benched", "p", 0, "sk-...a1b2", 401, "x", None)

        def emit() -> None:
            d.emit(event)
            d.queue.get_nowait()

        return per_call_ns(emit, 100_000)

    print(f"alert event queued (emit + the dispatcher's get): {asyncio.run(emit_cost()):.0f} ns")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p").mkdir()
        keys = ", ".join(f'"sk-bench-{k:04d}-secret"' for k in range(args.keys))
        text = "schema = 1\n[settings]\npricing = \"lenient\"\n" + "".join(
            f'[[provider]]\nid = "p{i}"\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:1"\n'
            f'api_keys = [{keys}]\nmodels = ["m"]\n' for i in range(args.providers))
        (root / "p" / "b.toml").write_text(text)
        snap = load_snapshot(root / "p", env={})
        full = HealthStats()
        for pid in snap.providers:
            for k in range(args.keys):
                for _ in range(256):
                    HealthStats.end(full.begin(pid, k), True, time.monotonic())
        rings = {pid: KeyRing(p.api_keys) for pid, p in snap.providers.items()}
        breakers = Breakers()
        def build(busy: bool) -> tuple[float, dict[str, object]]:
            t = time.perf_counter()
            for _ in range(20):
                if busy:  # every key's summary is due (one in two documents, at most)
                    for pid in snap.providers:
                        for k in range(args.keys):
                            key_stats = full.get(pid, k)
                            assert key_stats is not None
                            key_stats.summary = None
                doc = worker_document(snap.providers, breakers.all(), rings, full)
                publish(root / "data", doc)
            return (time.perf_counter() - t) / 20, doc

        idle, doc = build(False)
        busy, doc = build(True)
        publish(root / "data", {**doc, "pid": -1})
        t = time.perf_counter()
        for _ in range(20):
            merged_health(snap, read_documents(root / "data"))
        merge = (time.perf_counter() - t) / 20
        size = (root / "data" / "health" / f"worker-{doc['pid']}.json").stat().st_size
        print(f"{args.providers} providers x {args.keys} keys, 256 samples each, once a second per worker: "
              f"worker document built and published in {busy * 1000:.1f} ms with every key's summary recomputed, "
              f"{idle * 1000:.1f} ms with summaries cached ({size / 1024:.0f} KiB); 2 workers merged for /admin/providers "
              f"in {merge * 1000:.1f} ms")


if __name__ == "__main__":
    main()
