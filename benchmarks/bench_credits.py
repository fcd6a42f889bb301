"""What prepaid credits cost, as figures and ratios (docs/credits.md):

1. admit + settle per request (µs, in-process limiter, 16 requests in flight): a postpaid key
   without limits, a key with a monthly budget, a prepaid key; memory store and Redis;
2. booking in the ledger (ms per entry, a real DuckDB file, no socket): a top-up committed and
   checkpointed (what the API waits for) vs the same insert committed only, and a redemption.

Run: .venv/bin/python -m benchmarks.bench_credits [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from benchmarks.bench_limits import admit_settle, redis_server
from gateway.billing.limiter import EnforcingLimiter
from gateway.billing.redis_store import RedisStore
from gateway.billing.store import MemoryStore, StateStore
from gateway.config import load_snapshot
from gateway.config.snapshot import Snapshot
from gateway.usage.codes import code_hash, new_code
from gateway.usage.credits_store import dispatch
from gateway.usage.store import LedgerStore

BUNDLE = """schema = 1
[settings]
pricing = "lenient"
[[provider]]
id = "mock"
kind = "mock"
models = ["m-small"]
[price.m-small]
input = 0.15
output = 0.6
[[key]]
id = "free"
hash = "sha256:{h}1"
[[key]]
id = "budget"
hash = "sha256:{h}2"
budget = {{ usd = 1000000, period = "month" }}
[[key]]
id = "prepaid"
hash = "sha256:{h}3"
billing = "prepaid"
"""


class Credits:
    async def credit_total(self, key_id: str) -> tuple[Decimal, int]:
        return Decimal(1_000_000), 1


class Spent:
    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal:
        return Decimal(0)


def snapshot(directory: Path) -> Snapshot:
    (directory / "b.toml").write_text(BUNDLE.format(h="0" * 63))
    return load_snapshot(directory)


def limiter_table(snap: Snapshot, redis_url: str, n: int) -> None:
    print(f"admit + settle, {n} requests, 16 in flight (median of 3; wall µs / CPU µs per request)")
    stores: list[tuple[str, Callable[[], StateStore]]] = [("memory", MemoryStore),
                                                           ("redis", lambda: RedisStore(redis_url))]
    for name, make in stores:
        base = None
        for key in ("free", "budget", "prepaid"):
            limiter = EnforcingLimiter(make(), Spent(), credit_source=Credits())
            wall, cpu = asyncio.run(admit_settle(limiter, snap, key, n, 16))
            base = base or wall
            print(f"  {name:6} {key:8} {wall:8.1f} / {cpu:6.1f}   x{wall / base:.2f} of postpaid")


def ms_per(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def ledger_table(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(Path(tmp) / "usage.duckdb")
        con = store.con
        try:
            booked = ms_per(lambda i: dispatch(con, {"op": "credit_add", "key_id": "k", "usd": "1",
                                                    "reference": f"r{i}"}), n)

            def commit_only(i: int) -> None:
                con.execute("INSERT INTO credits (key_id, amount_usd, kind, reference, created_at) "
                            "VALUES ('k', 1, 'topup', ?, ?)", [f"c{i}", datetime.now(UTC)])

            plain = ms_per(commit_only, n)
            codes = [new_code() for _ in range(n)]
            dispatch(con, {"op": "codes_add", "hashes": [code_hash(c) for c in codes], "usd": "1"})
            redeemed = ms_per(lambda i: dispatch(con, {"op": "redeem", "code_hash": code_hash(codes[i]),
                                                       "key_id": "k"}), n)
        finally:
            store.close()
    print(f"ledger bookings, median of {n} (ms per entry)")
    print(f"  top-up, committed + checkpointed (the API's path) {booked:7.2f}")
    print(f"  the same insert, committed only                   {plain:7.2f}   (x{booked / plain:.1f})")
    print(f"  redemption (lookups + insert + checkpoint)        {redeemed:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000, help="admit + settle rounds per case")
    parser.add_argument("--bookings", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        limiter_table(snapshot(Path(tmp)), url, args.n)
    ledger_table(args.bookings)


if __name__ == "__main__":
    main()
