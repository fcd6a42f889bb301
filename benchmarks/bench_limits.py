"""What limit checks add per request, with the memory store and with Redis, as ratios to the
same run without limits.

1. admit + settle alone (µs per request): no limiter, a key without limits, and a key with
   rpm + tpm + concurrency + a budget on the key and rpm on its group (five checks);
2. the whole request in-process (RSGI app, canned upstream, no sockets), same three cases;
3. with --e2e: a real `tollgate serve` (one worker) and the fast mock upstream under wrk
   (c=16, non-streaming), a key without limits vs the limited key, memory and Redis.

Redis is a redis-server this benchmark starts on a free loopback port (unix socket not used:
the figure is for TCP, as across machines). Run: .venv/bin/python -m benchmarks.bench_limits [--e2e]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from benchmarks.bench_hotpath import _CannedClient, _Proto, _Scope
from gateway.billing.limiter import EnforcingLimiter
from gateway.billing.limits import Limiter, NoLimits
from gateway.billing.redis_store import RedisStore
from gateway.billing.store import MemoryStore
from gateway.config import load_snapshot
from gateway.config.reload import PolicyStore
from gateway.config.snapshot import Snapshot
from gateway.server.app import App
from gateway.server.state import WorkerState
from gateway.settings import ServeSettings
from gateway.usage.record import UsageRecord

ROOT = Path(__file__).resolve().parent.parent
BIG = 1_000_000_000  # limits that are checked and charged but never reached


def bundle(base_url: str) -> str:
    digest = {n: hashlib.sha256(n.encode()).hexdigest() for n in ("free", "limited")}
    return f"""schema = 1
[settings]
pricing = "lenient"
[[provider]]
id = "up"
kind = "openai-compatible"
base_url = "{base_url}"
api_keys = ["sk"]
models = ["m-small", "mock-model"]
[price.m-small]  # priced, so that the budget check reserves and settles a real cost
input = 0.15
output = 0.60
[group.g]
limits = {{ rpm = {BIG} }}
[[key]]
id = "free"
hash = "sha256:{digest['free']}"
[[key]]
id = "limited"
hash = "sha256:{digest['limited']}"
group = "g"
limits = {{ rpm = {BIG}, tpm = {BIG}, concurrency = 100000 }}
budget = {{ usd = 1000000, period = "month" }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (make system-deps)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def limiters(redis_url: str) -> dict[str, tuple[Limiter, str]]:
    return {
        "no limiter": (NoLimits(), "limited"),
        "memory, key without limits": (EnforcingLimiter(MemoryStore()), "free"),
        "memory, 5 checks": (EnforcingLimiter(MemoryStore()), "limited"),
        "redis, 5 checks": (EnforcingLimiter(RedisStore(redis_url)), "limited"),
    }


async def admit_settle(limiter: Limiter, snap: Snapshot, key_id: str, n: int, tasks: int) -> tuple[float, float]:
    """(wall µs, CPU µs of this process) per admit + settle, with `tasks` requests in flight."""
    key = snap.keys_by_id[key_id]
    now = datetime.now(UTC)
    record = UsageRecord(request_id="r", started_at=now, finished_at=now, prompt_tokens=20,
                         completion_tokens=30, cost_usd=Decimal("0.0001"))

    async def worker(count: int) -> None:
        for _ in range(count):
            admission = await limiter.admit(snap, key, "m-small", 300)
            await limiter.settle(admission, record)

    walls, cpus = [], []
    for _ in range(3):
        t, c = time.perf_counter_ns(), time.process_time_ns()
        await asyncio.gather(*(worker(n // tasks) for _ in range(tasks)))
        walls.append((time.perf_counter_ns() - t) / n / 1000)
        cpus.append((time.process_time_ns() - c) / n / 1000)
    return statistics.median(walls), statistics.median(cpus)


async def request_us(limiter: Limiter, store: PolicyStore, key_id: str, n: int) -> float:
    """CPU µs of the whole in-process request (RSGI app, canned upstream), one at a time."""
    app = App()
    app.state = WorkerState(ServeSettings(ledger=False), store, _CannedClient(), None,  # type: ignore[arg-type]
                            limiter)
    runs = []
    for _ in range(3):
        c = time.process_time_ns()
        for _ in range(n):
            proto = _Proto()
            await app.__rsgi__(_Scope(key_id), proto)
            assert proto.status == 200, proto.status
        runs.append((time.process_time_ns() - c) / n / 1000)
    return statistics.median(runs)


def in_process(redis_url: str, rounds: int) -> None:
    """Cases interleaved round by round, medians reported: drift on a shared machine hits all."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bundle.toml").write_text(bundle("http://127.0.0.1:9/v1"))
        snap = load_snapshot(tmp)
        store = PolicyStore(Path(tmp), snap)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    cases = limiters(redis_url)
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (limiter, key_id) in cases.items():
            n = 1024 if "redis" in name else 8192
            loop.run_until_complete(admit_settle(limiter, snap, key_id, n // 8, 1))  # warm-up
            wall1, cpu1 = loop.run_until_complete(admit_settle(limiter, snap, key_id, n, 1))
            wall32, cpu32 = loop.run_until_complete(admit_settle(limiter, snap, key_id, n, 32))
            whole = loop.run_until_complete(request_us(limiter, store, key_id, n // 2))
            results[name].append((wall1, cpu1, wall32, cpu32, whole))
    loop.close()
    print("admit+settle: wall and CPU µs per request, one at a time and 32 in flight; "
          f"whole in-process request: CPU µs (medians of {rounds} interleaved rounds)")
    print(f"{'':28s} {'wall c=1':>9s} {'CPU c=1':>8s} {'wall c=32':>10s} {'CPU c=32':>9s}"
          f" {'request CPU':>12s} {'ratio':>6s}")
    base = statistics.median(r[4] for r in results["no limiter"])
    for name, rows in results.items():
        m = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"{name:28s} {m[0]:9.2f} {m[1]:8.2f} {m[2]:10.2f} {m[3]:9.2f} {m[4]:12.2f} {m[4] / base:5.2f}x")


def e2e(redis_url: str, seconds: float) -> None:
    from benchmarks.loadgen import run_wrk
    from benchmarks.targets import Endpoint

    wrk = shutil.which("wrk")
    if wrk is None:
        print("e2e skipped: wrk is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        up_port = free_port()
        upstream = subprocess.Popen([sys.executable, "-m", "benchmarks.mock_upstream", "--port", str(up_port)],
                                    cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
        (work / "policies").mkdir()
        (work / "policies" / "bundle.toml").write_text(bundle(f"http://127.0.0.1:{up_port}/v1"))
        base = None
        try:
            for store, extra in (("memory", []), ("redis", ["--state-store", "redis", "--redis-url", redis_url])):
                port = free_port()
                gw = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "serve", "--policies", str(work / "policies"),
                     "--data-dir", str(work / "data"), "--port", str(port), "--no-ledger",
                     "--log-level", "warning", *extra], cwd=ROOT, start_new_session=True)
                try:
                    _wait_ready(port)
                    for key_id in ("free", "limited"):
                        endpoint = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions",
                                            {"Authorization": f"Bearer {key_id}"}, "m-small", "m-small")
                        run_wrk(wrk, endpoint, 16, 1, None, work)  # warm-up
                        r = run_wrk(wrk, endpoint, 16, seconds, None, work)
                        base = base or r["rps"]
                        label = f"e2e {store}, key {'without limits' if key_id == 'free' else 'with 5 checks'}"
                        print(f"{label:34s} {r['rps']:9.0f} rps  p50 {r['p50_ms']:.2f} ms  "
                              f"non-2xx {r['non_2xx']}  {r['rps'] / base:6.2f}x")
                finally:
                    gw.terminate()
                    gw.wait(30)
        finally:
            upstream.terminate()
            upstream.wait(10)


def _wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("gateway did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--e2e", action="store_true", help="also run a real gateway under wrk")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with redis_server() as url:
        in_process(url, args.rounds)
        if args.e2e:
            e2e(url, args.seconds)


if __name__ == "__main__":
    main()
