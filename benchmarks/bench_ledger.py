"""The ledger's costs: µs per `Ledger.record()` on the request path, ingest rows/s (into an empty
table, and into a 10-million-row table where the request_id anti-join has more to check), and a
per-key monthly spend report over 10 million synthetic rows.

Run: .venv/bin/python -m benchmarks.bench_ledger [--rows 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from gateway.usage.client import acall
from gateway.usage.ledger import Ledger
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore


def sample(i: int, prefix: str = "req") -> UsageRecord:
    now = dt.datetime.now(dt.UTC)
    return UsageRecord(request_id=f"{prefix}_{i:024d}", started_at=now, finished_at=now, key_id=f"k{i % 1000}",
                       group="pro", tags=["team-a"], endpoint="chat/completions", requested_model="fast",
                       served_model="gpt-4o-mini", provider="openai", attempts=1, status=200,
                       prompt_tokens=1200, completion_tokens=300, cached_tokens=200,
                       cost_usd=Decimal("0.000375000"), usage_source="upstream", latency_ms=412.5,
                       ttft_ms=120.0, policy_revision="abc123")


def bench_record(root: Path, n: int = 200_000) -> float:
    ledger = Ledger(root, interval_s=3600)  # not started: record() is what the relay calls
    rows = [sample(i) for i in range(n)]
    runs = []
    step = n // 5
    for start in range(0, n, step):
        t = time.perf_counter_ns()
        for r in rows[start:start + step]:
            ledger.record(r)
        runs.append((time.perf_counter_ns() - t) / step / 1000)
    ledger.spool.close()
    return statistics.median(runs)


def bench_ingest(store: LedgerStore, spool: Path, n: int, prefix: str) -> tuple[int, float]:
    writer = SpoolWriter(spool, rotate_s=3600)
    for i in range(n):
        writer.append(sample(i, prefix))
    writer.close()
    t = time.perf_counter()
    added = store.ingest(ready_segments(spool))
    return added, time.perf_counter() - t


async def bench_lag(root: Path, samples: int = 10) -> list[float]:
    """Seconds from `record()` in a worker to the row being visible to SQL, with the default
    0.5 s rotation and ingest period (the owner and the worker are two Ledgers, as in two
    processes: the second one cannot take the lock)."""
    owner, worker = Ledger(root), Ledger(root)
    await owner.start()
    await worker.start()
    assert owner.owner is not None and worker.owner is None
    lags = []
    try:
        for i in range(samples):
            await asyncio.sleep(0.13 * (i % 4))  # land at different points of the period
            t = time.perf_counter()
            worker.record(sample(i, "lag"))
            while True:
                answer = await acall(root, {"op": "query", "sql": "SELECT count(*) FROM usage WHERE request_id LIKE 'lag%'"})
                if answer["rows"][0][0] == i + 1:
                    break
                await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t)
    finally:
        await worker.close()
        await owner.close()
    return lags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        us = bench_record(root / "record")
        print(f"Ledger.record() (spool append, one write() per row): median {us:.2f} µs/row")
        lags = asyncio.run(bench_lag(root / "lag"))
        print(f"ingest lag (record() in a worker -> visible to SQL): median {statistics.median(lags):.2f} s, "
              f"max {max(lags):.2f} s")
        store = LedgerStore(root / "usage.duckdb")
        added, elapsed = bench_ingest(store, root / "spool", 200_000, "a")
        print(f"ingest into an empty table: {added:,} rows in {elapsed:.2f} s = {added / elapsed:,.0f} rows/s")
        t = time.perf_counter()
        store.con.execute(f"""
            INSERT INTO usage (request_id, started_at, finished_at, key_id, "group", endpoint, served_model,
                               provider, status, prompt_tokens, completion_tokens, cost_usd, usage_source)
            SELECT 'syn' || i, now() - INTERVAL 1 YEAR + to_seconds(i * 3), now() - INTERVAL 1 YEAR,
                   'k' || (i % 1000), 'pro', 'chat/completions', 'gpt-4o-mini', 'openai', 200,
                   1000 + i % 500, 200 + i % 100, CAST((i % 997) AS DECIMAL(18,9)) / 1000000, 'upstream'
            FROM range({args.rows}) t(i)""")
        print(f"generated {args.rows:,} synthetic rows over the past year in {time.perf_counter() - t:.1f} s")
        for batch in (2_000, 50_000):
            added, elapsed = bench_ingest(store, root / "spool", batch, f"b{batch}")
            print(f"ingest a {batch:,}-row batch into the {args.rows / 1e6:g}M-row table: {elapsed * 1000:.0f} ms "
                  f"= {added / elapsed:,.0f} rows/s")
        total = store.query("SELECT count(*) FROM usage")["rows"][0][0]
        for label, sql in (
            ("view spend_by_key_month", "SELECT * FROM spend_by_key_month"),
            ("ad-hoc GROUP BY key, month", "SELECT key_id, date_trunc('month', started_at) AS month, "
             "sum(cost_usd) AS usd, count(*) FROM usage GROUP BY ALL ORDER BY month, key_id"),
        ):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                result = store.query(sql, limit=1_000_000)
                times.append(time.perf_counter() - t)
            print(f"per-key monthly spend ({label}) over {total:,} rows: {len(result['rows']):,} result rows, "
                  f"median {statistics.median(times) * 1000:.0f} ms")
        store.close()


if __name__ == "__main__":
    main()
