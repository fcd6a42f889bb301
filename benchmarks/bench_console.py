"""The console over a big ledger, and what it costs the relay.

    .venv/bin/python -m benchmarks.bench_console                 # 10M rows, pages, then relay req/s
    .venv/bin/python -m benchmarks.bench_console --rows 1000000 --skip-relay

1. Generates a ledger of `--rows` usage rows over the last 30 days with DuckDB SQL (200 keys in 5
   groups, 6 models on 3 providers, ~3% errors), kept in benchmarks/.work/console/ and reused.
2. Starts `tollgate serve` on it (the mock provider, the 200 keys, some with budgets and limits),
   signs in as an operator and as key `key-7`, and times every console page: the first (cold)
   answer and the median and worst of `--reps` more.
3. Relay req/s (wrk, non-streaming chat to the mock provider) with no console, and with the
   operator overview fetched every 2 s as an open browser tab does; runs alternate, the ratio
   is of the medians. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import run_wrk  # noqa: E402
from benchmarks.targets import Endpoint  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "console"
KEYS, GROUPS = 200, 5
ADMIN, CLIENT, RELAY = "bench-admin-key", "bench-key-7", "bench-relay-key"

GENERATE = """
INSERT INTO usage BY NAME
SELECT
  'req_' || lpad(CAST(i AS VARCHAR), 12, '0') AS request_id,
  t AS started_at, t + INTERVAL (lat) MILLISECOND AS finished_at,
  'key-' || CAST(k AS VARCHAR) AS key_id, 'group-' || CAST(k % 5 AS VARCHAR) AS "group", ['bench'] AS tags,
  'chat/completions' AS endpoint, m AS requested_model, m AS served_model,
  ['mock', 'mock', 'other', 'third', 'mock', 'other'][(i % 6) + 1] AS provider,
  1 AS attempts, CASE WHEN h % 100 < 2 THEN 502 WHEN h % 100 < 3 THEN 429 ELSE 200 END AS status,
  CASE WHEN h % 100 < 2 THEN 'upstream_error' WHEN h % 100 < 3 THEN 'rate_limited' END AS error_type,
  i % 4 = 0 AS stream, false AS cancelled, pt AS prompt_tokens, ct AS completion_tokens, 0 AS cached_tokens,
  0 AS cache_write_tokens, 0 AS reasoning_tokens, 0 AS images, 0.0 AS audio_seconds,
  CAST((pt * 1.0 + ct * 2.0) / 1000000 AS DECIMAL(18,9)) AS cost_usd, 'upstream' AS usage_source,
  lat AS latency_ms, lat / 3 AS ttft_ms, 'bench' AS policy_revision
FROM (
  SELECT i, h, k, m, 50 + h % 2000 AS pt, 10 + (h // 7) % 800 AS ct, 5.0 + (h // 13) % 900 AS lat,
         now() - INTERVAL 30 DAY + to_microseconds(CAST(CAST(i AS HUGEINT) * 2592000000000 // $n AS BIGINT)) AS t
  FROM (SELECT i, hash(i) AS h, (hash(i) // 3) % 200 AS k,
               ['mock-small', 'mock-large', 'gpt-x', 'claude-y', 'gemini-z', 'local-w'][(i % 6) + 1] AS m
        FROM range($n) r(i))
)
ORDER BY started_at
"""


def key_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def ledger(data_dir: Path, rows: int, fresh: bool) -> None:
    import duckdb

    from gateway.usage.schema import DDL

    path = data_dir / "usage.duckdb"
    if path.exists() and not fresh:
        with duckdb.connect(str(path), read_only=True) as con:
            row = con.execute("SELECT count(*), max(started_at) > now() - INTERVAL 1 DAY FROM usage").fetchone()
            if row and row[0] >= rows and row[1]:  # (the relay runs add rows)
                print(f"reusing the ledger of {rows:,} rows at {path}")
                return
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(DDL)
        con.execute(GENERATE.replace("$n", str(rows)))
        con.execute("CHECKPOINT")
    print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s "
          f"({path.stat().st_size / 1e6:.0f} MB)")


def bundle(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    lines = ['schema = 1', '[settings]', 'pricing = "lenient"', '',
             '[[provider]]', 'id = "mock"', 'kind = "mock"', 'models = ["mock-small", "mock-large"]', '',
             '[price.mock-small]', 'input = 1.0', 'output = 2.0', '']
    for g in range(GROUPS):
        lines += [f'[group.group-{g}]', f'budget = {{ usd = {200 + 100 * g}, period = "month" }}',
                  'limits = { rpm = 100000 }', '']
    for k in range(KEYS):
        lines += ['[[key]]', f'id = "key-{k}"', f'hash = "{key_hash(f"bench-key-{k}")}"', f'group = "group-{k % 5}"']
        if k % 10 == 7:
            lines += ['budget = { usd = 50, period = "week" }', 'limits = { rpm = 100000, tpm = 100000000 }']
        lines.append('')
    lines += ['[[key]]', 'id = "relay"', f'hash = "{key_hash(RELAY)}"', '']  # no budget: never refused
    lines += ['[[admin_key]]', 'id = "bench-admin"', f'hash = "{key_hash(ADMIN)}"']
    (directory / "bundle.toml").write_text("\n".join(lines) + "\n")


def sign_in(url: str, secret: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    form = client.get("/console/login").text
    nonce = re.search(r'name="csrf" value="([^"]+)"', form)
    assert nonce, form[:300]
    answer = client.post("/console/login", data={"key": secret, "csrf": nonce.group(1)})
    assert answer.status_code == 303, answer.text[:300]
    return client


def variants(path: str, reps: int) -> list[str]:
    """`path` with its query parameters in other orders: the same work, distinct entries of the
    console's page cache, so each fetch computes the page again."""
    base, _, query = path.partition("?")
    params = query.split("&") if query else []
    defaults = {"bucket": "bucket=hour", "range": "range=24h"}
    for name, pair in defaults.items():
        if not any(p.startswith(name + "=") for p in params):
            params.append(pair)
    out = []
    for order in itertools.permutations(params):
        out.append(f"{base}?{'&'.join(order)}")
        if len(out) == reps + 1:
            break
    return out


def time_page(client: httpx.Client, path: str, reps: int) -> dict[str, Any]:
    computed = []
    for variant in variants(path, reps):
        started = time.perf_counter()
        answer = client.get(variant)
        computed.append(time.perf_counter() - started)
        assert answer.status_code == 200, (variant, answer.status_code, answer.text[-500:])
    started = time.perf_counter()
    client.get(variants(path, reps)[0])  # the same again: from the page cache where there is one
    cached = time.perf_counter() - started
    return {"path": path, "cold_s": computed[0], "median_s": statistics.median(computed),
            "max_s": max(computed), "cached_s": cached, "bytes": len(answer.content)}


PAGES_ADMIN = ["/console/?range=24h", "/console/?range=7d&by=key", "/console/?range=30d&bucket=day&by=provider",
               "/console/usage?range=24h", "/console/usage?range=30d&key=key-7&status=error",
               "/console/keys/key-7?range=7d", "/console/usage.csv?range=1h&key=key-7"]
PAGES_KEY = ["/console/me?range=24h", "/console/me?range=30d&bucket=day"]


def pages(gw: GatewayProcess, reps: int) -> list[dict[str, Any]]:
    admin, holder = sign_in(gw.url, ADMIN), sign_in(gw.url, CLIENT)
    results = [time_page(admin, p, reps) for p in PAGES_ADMIN] + [time_page(holder, p, reps) for p in PAGES_KEY]
    print(f"\n{'page (seconds; computed = each fetch rescans)':<58} {'first':>7} {'median':>7} {'worst':>7} "
          f"{'again':>7}")
    for r in results:
        print(f"{r['path']:<58} {r['cold_s']:7.3f} {r['median_s']:7.3f} {r['max_s']:7.3f} {r['cached_s']:7.3f}")
    return results


def relay(gw: GatewayProcess, seconds: float, rounds: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk not found: relay req/s skipped")
        return
    endpoint = Endpoint(f"{gw.url}/v1/chat/completions", {"Authorization": f"Bearer {RELAY}"},
                        "mock-small", "mock-small")
    admin = sign_in(gw.url, ADMIN)
    runs: dict[str, list[float]] = {"no console": [], "console every 2 s": []}
    page_times: list[float] = []
    for _ in range(rounds):
        for mode in runs:
            stop = threading.Event()
            poller = threading.Thread(target=_refresh, args=(admin, stop, page_times), daemon=True)
            if mode != "no console":
                poller.start()
            result = run_wrk(wrk, endpoint, 16, seconds, None, WORK / "wrk")
            stop.set()
            if poller.is_alive():
                poller.join()
            runs[mode].append(result["rps"])
            print(f"{mode:<20} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:.2f} ms  non-2xx {result['non_2xx']}")
    base, loaded = statistics.median(runs["no console"]), statistics.median(runs["console every 2 s"])
    print(f"\nrelay req/s, median of {rounds}: no console {base:.0f}, overview every 2 s {loaded:.0f} "
          f"-> ratio {loaded / base:.2f}")
    if page_times:
        print(f"overview under load: {len(page_times)} fetches, median {statistics.median(page_times):.3f} s, "
              f"worst {max(page_times):.3f} s")


def _refresh(client: httpx.Client, stop: threading.Event, times: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        client.get("/console/?range=24h")
        client.get("/console/api/live")
        times.append(time.perf_counter() - started)
        stop.wait(2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="generate the ledger again")
    parser.add_argument("--skip-relay", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data_dir = WORK / f"data-{args.rows}"
    ledger(data_dir, args.rows, args.fresh)
    bundle(WORK / "policies")
    with GatewayProcess(WORK / "policies", data_dir, env={"TOLLGATE_LOG_LEVEL": "warning"}) as gw:
        if not args.skip_pages:
            pages(gw, args.reps)
        if not args.skip_relay:
            relay(gw, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
