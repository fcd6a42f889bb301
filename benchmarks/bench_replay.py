"""`tollgate diff --replay`: seconds to re-price N synthetic usage rows (default 10 million)
under a new bundle, through the ledger owner (the call takes ownership, as the CLI does on a
stopped gateway), and the rows per second. The target is 10M rows in under 10 s.

Run: .venv/bin/python -m benchmarks.bench_replay [--rows 10000000] [--days 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import duckdb

from gateway.config import load_snapshot
from gateway.diff.replay import owner_query, replay
from gateway.usage.schema import TABLES

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "diff"
KEYS = ["alice", "bob", "carol", "dave", "ghost"]  # ghost: a key in no bundle
GROUPS = ["team", "team", "research", None, None]
MODELS = ["gpt-4o", "gpt-4o-mini", "smart", "claude-3"]
SERVED = ["gpt-4o", "gpt-4o-mini", "gpt-4o", "claude-3"]


# the columns the generator fills, in this order (the ledger has more: they stay NULL)
FILLED = ["request_id", "started_at", "finished_at", "key_id", "group", "tags", "endpoint", "requested_model",
          "served_model", "provider", "attempts", "status", "error_type", "stream", "cancelled", "prompt_tokens",
          "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "images",
          "audio_seconds", "cost_usd", "usage_source", "latency_ms", "ttft_ms", "policy_revision"]


def _list(values: list[str | None]) -> str:
    return "[" + ", ".join("NULL" if v is None else f"'{v}'" for v in values) + "]"


def make_ledger(path: Path, rows: int, days: int, now: dt.datetime) -> None:
    """A ledger of `rows` deterministic pseudo-random rows spread over the `days` before `now`:
    five keys, four requested models, two providers for gpt-4o, cache reads and writes,
    reasoning, images, 2% failed requests without usage; small prompts make nano-dollar ties."""
    con = duckdb.connect(str(path))
    con.execute(TABLES)
    h = "hash(i)"
    con.execute(f"""
        INSERT INTO usage ({", ".join(f'"{c}"' for c in FILLED)}) SELECT
          'req-' || i, ts, ts, {_list(KEYS)}[i % 5 + 1], {_list(GROUPS)}[i % 5 + 1], [], '/v1/chat/completions',
          {_list(MODELS)}[m + 1], {_list(SERVED)}[m + 1],
          CASE WHEN m = 0 AND i % 3 = 0 THEN 'backup' ELSE 'mock' END, 1,
          CASE WHEN failed THEN 500 ELSE 200 END, CASE WHEN failed THEN 'upstream_error' END, false, false,
          CASE WHEN failed THEN 0 ELSE prompt END, CASE WHEN failed THEN 0 ELSE completion END,
          CASE WHEN failed THEN 0 ELSE prompt * (i % 3) // 4 END,
          CASE WHEN failed OR i % 7 <> 0 THEN 0 ELSE prompt // 10 END,
          CASE WHEN failed OR i % 5 <> 0 THEN 0 ELSE completion // 2 END,
          CASE WHEN i % 97 = 0 AND NOT failed THEN 1 ELSE 0 END, 0.0,
          CASE WHEN failed THEN NULL ELSE CAST(prompt * 0.0000025 + completion * 0.00001 AS DECIMAL(18,9)) END,
          CASE WHEN failed THEN 'none' ELSE 'upstream' END, 100.0, NULL, 'old'
        FROM (
          SELECT i, CAST(({h} >> 7) % 4 AS BIGINT) AS m, i % 50 = 0 AS failed,
                 CAST(CASE WHEN i % 11 = 0 THEN i % 9 ELSE ({h} >> 13) % 6000 END AS BIGINT) AS prompt,
                 CAST(({h} >> 29) % 2500 AS BIGINT) AS completion,
                 TIMESTAMPTZ '{now.isoformat()}' - to_seconds(CAST(({h} >> 41) % {days * 86400} AS BIGINT)) AS ts
          FROM range({rows}) t(i)
        )""")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    old, new = load_snapshot(FIXTURES / "base"), load_snapshot(FIXTURES / "prices")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        make_ledger(data / "usage.duckdb", args.rows, args.days, now)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        query = owner_query(data)
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = replay(old, new, query, args.days, now)
            timings.append(time.perf_counter() - t0)
        best = min(timings)
        print(f"replayed {result.total.requests:,} rows over {args.days} days: best {best:.2f} s "
              f"of {', '.join(f'{t:.2f}' for t in timings)} ({result.total.requests / best / 1e6:.1f} M rows/s); "
              f"spend {result.total.old} -> {result.total.new}")


if __name__ == "__main__":
    main()
