"""Does the ledger keep up with the workers at full speed? (issue 14, target 3: "lag bounded, no
growth of the spool", with the ingester's cost per row.)

Starts the mock upstream and `tollgate serve --workers N` on the benchmark bundle (Redis-backed
limits with a throw-away redis-server when N > 1), drives it with wrk for `--duration` seconds,
and samples every second the spool's backlog: the bytes of segments written by the workers and not
yet ingested by the ledger owner. After the load it measures how long the ledger takes to hold a
row for every answered request (the lag at the end) and reports the owner's CPU per row.
Nothing is pinned: on a 2-core machine the workers, the owner, Redis, the mock and wrk share both.

Run: .venv/bin/python -m benchmarks.bench_ledger_lag [--workers 2] [--duration 30] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import procs
from benchmarks.bench_memory import redis_server, role
from benchmarks.bundle import bench_key, write_bundle
from benchmarks.loadgen import run_wrk
from benchmarks.targets import Endpoint, Running, free_port, wait_ready

REPO = Path(__file__).resolve().parent.parent
TOLLGATE = REPO / ".venv" / "bin" / "tollgate"


def spool_backlog(data: Path) -> int:
    """Bytes in the spool not yet ingested (open and closed segments)."""
    total = 0
    for path in (data / "spool").glob("*"):
        try:
            total += path.stat().st_size
        except OSError:  # ingested (removed) meanwhile
            continue
    return total


def ledger_rows(data: Path) -> int:
    done = subprocess.run([str(TOLLGATE), "usage", "sql", "--data-dir", str(data), "--format", "json",
                           "SELECT count(*) AS n FROM usage"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"tollgate usage sql failed: {done.stderr.strip()}")
    return int(json.loads(done.stdout)[0]["n"])


def wait_for_rows(data: Path, expected: int, timeout: float) -> int:
    """Poll the ledger until it holds `expected` rows (or `timeout` passes); the count."""
    deadline = time.monotonic() + timeout
    rows = ledger_rows(data)
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = ledger_rows(data)
    return rows


def owner_cpu(root: int) -> float:
    return procs.cpu_seconds([p for p in procs.group_pids(root) if role(p, root) == "ledger owner (ingester)"])


def workers_cpu(root: int) -> float:
    return procs.cpu_seconds([p for p in procs.group_pids(root) if role(p, root) == "worker"])


class Backlog(procs.Periodic):
    """`spool_backlog` every second while the load runs."""

    def __init__(self, data: Path) -> None:
        super().__init__(1.0)
        self.data = data
        self.samples: list[int] = []

    def sample(self) -> int:
        value = spool_backlog(self.data)
        self.samples.append(value)
        return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redis", action="store_true",
                        help="Redis-backed limits with one worker too (to compare the workers' CPU per request)")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None or not TOLLGATE.exists():
        print("needs wrk and .venv/bin/tollgate (make)", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tg-lag-")))
        mock_port, port = free_port(), free_port()
        mock = procs.start("mock", [sys.executable, "-m", "benchmarks.mock_upstream", "--port", str(mock_port)],
                           tmp / "mock.log", None, cwd=REPO)
        stack.callback(mock.stop)
        bundle, data = write_bundle(tmp / "bundle", mock_port), tmp / "data"
        serve = [str(TOLLGATE), "serve", "--policies", str(bundle), "--port", str(port), "--workers",
                 str(args.workers), "--data-dir", str(data), "--log-level", "warning"]
        if args.workers > 1 or args.redis:  # shared limits: the bundle has rate limits and budgets
            serve += ["--state-store", "redis", "--redis-url", stack.enter_context(redis_server())]
        gateway = procs.start("tollgate", serve, tmp / "tollgate.log", None, cwd=REPO)
        stack.callback(gateway.stop)
        endpoint = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions",
                            {"authorization": f"Bearer {bench_key()}"}, "bench", "bench-paced")
        wait_ready(Running(endpoint, gateway), 60)
        warm = run_wrk(wrk, endpoint, args.connections, 2, None, tmp)["requests"]
        wait_for_rows(data, warm, 60)  # the warm-up's rows are in before the measured run
        cpu0, rows0 = owner_cpu(gateway.pgid), ledger_rows(data)
        served0 = workers_cpu(gateway.pgid)
        with Backlog(data) as backlog:
            result = run_wrk(wrk, endpoint, args.connections, args.duration, None, tmp)
        per_request = (workers_cpu(gateway.pgid) - served0) / max(result["requests"], 1) * 1e6
        stopped = time.monotonic()
        expected = rows0 + result["requests"]
        rows = wait_for_rows(data, expected, 60)
        lag = time.monotonic() - stopped
        per_row = (owner_cpu(gateway.pgid) - cpu0) / max(rows - rows0, 1) * 1e6
    samples = backlog.samples or [0]
    windows = [max(samples[i:i + 10]) // 1024 for i in range(0, len(samples), 10)]
    print(f"--workers {args.workers}, wrk c={args.connections} for {args.duration:g} s: "
          f"{result['rps']:,.0f} req/s, {result['requests']:,} answered ({result['non_2xx']} non-2xx)")
    print(f"spool backlog (KB, sampled each second): median {statistics.median(samples) / 1024:,.0f}, "
          f"max {max(samples) / 1024:,.0f}; max of each 10 s: {', '.join(f'{w:,}' for w in windows)}")
    print(f"ledger: {rows - rows0:,} rows for {result['requests']:,} requests; every row in "
          f"{lag:.1f} s after the load stopped; owner CPU {per_row:.1f} µs per row")
    # What scaling across cores needs: a cost per request that does not grow with the workers
    # (on this 2-core box wrk, the mock and Redis take cores the workers would need).
    print(f"workers: {per_request:.1f} µs of CPU per request (all workers together)")
    return 0 if rows >= expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
