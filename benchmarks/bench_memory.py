"""Start-up time and idle memory of `tollgate serve` on the default bundle (issue 14, targets 2 and 4).

For each worker count (default 1, then 2): starts `tollgate serve --policies policies` in its own
session on a free loopback port with a fresh data directory, measures the time from the process
start to the first answered `POST /v1/chat/completions` (the demo key, the mock provider), waits
for /readyz, lets the tree idle a few seconds, then reads RSS, PSS and private memory
(/proc/PID/smaps_rollup) of every process of the tree, prints a table and stops everything.

RSS counts a page shared by two processes (the supervisor forks its workers) in
both; PSS divides it among them, so the PSS column adds up to the tree's real footprint.

Run: .venv/bin/python -m benchmarks.bench_memory [--workers 1,2] [--idle 5] [--reps 1]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .procs import group_pids

ROOT = Path(__file__).resolve().parent.parent
TOLLGATE = Path(sys.executable).parent / "tollgate"
BODY = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}).encode()
MB = 1024 * 1024


@dataclass
class Mem:
    pid: int
    role: str
    rss: int
    pss: int
    private: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        headers = {"Authorization": "Bearer tg-demo-key", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def smaps(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, private) in bytes, from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Rss", 0), fields.get("Pss", 0), private


def role(pid: int, root: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if pid == root:
        return "supervisor (tollgate serve)"
    if "gateway.usage.ingester" in argv[1:4]:  # python [-P] -m gateway.usage.ingester
        return "ledger owner (ingester)"
    return "worker"  # forked from the supervisor: the same command line


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on loopback (not part of the measured tree)."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def tree(root: int) -> list[Mem]:
    mems = []
    for pid in sorted(group_pids(root)):
        with contextlib.suppress(OSError):
            mems.append(Mem(pid, role(pid, root), *smaps(pid)))
    return mems


def released(root: int, wait: float) -> list[Mem]:
    """The tree once the ledger owner has let DuckDB go (`ledger_idle_release_s`), polled until
    the owner's RSS falls under 50 MB or `wait` seconds pass."""
    deadline = time.monotonic() + wait
    while True:
        mems = tree(root)
        owner = [m for m in mems if m.role.startswith("ledger owner")]
        if not owner or owner[0].rss < 50 * MB or time.monotonic() > deadline:
            return mems
        time.sleep(0.5)


def measure(workers: int, idle: float, redis_url: str | None, request_first: bool = True,
            release_wait: float = 0.0) -> tuple[float, list[Mem], list[Mem] | None]:
    """`request_first=False`: no chat request (the ledger stays empty); the time is to /readyz.
    `release_wait`: also measure the tree after the owner's idle release, waiting up to this long."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tg-mem-") as data:
        argv = [str(TOLLGATE), "serve", "--policies", str(ROOT / "policies"), "--data-dir", data,
                "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
        if redis_url is not None:  # the default bundle has limits: more than one worker shares them
            argv += ["--state-store", "redis", "--redis-url", redis_url]
        log = Path(data) / "serve.log"
        with open(log, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=ROOT, start_new_session=True)
        try:
            first = None
            deadline = started + 60
            while first is None and time.perf_counter() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"tollgate serve exited:\n{log.read_text(errors='replace')}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if (request(port, "POST", "/v1/chat/completions", BODY) if request_first
                            else request(port, "GET", "/readyz")) == 200:
                        first = time.perf_counter() - started
                        break
                time.sleep(0.01)
            if first is None:
                raise RuntimeError("no answer within 60 s")
            while request(port, "GET", "/readyz") != 200:
                time.sleep(0.05)
            time.sleep(idle)
            busy = tree(proc.pid)
            return first, busy, released(proc.pid, release_wait) if release_wait else None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            for pid in group_pids(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, in order")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading memory")
    parser.add_argument("--reps", type=int, default=1, help="start-ups per worker count (median time)")
    parser.add_argument("--no-request", action="store_true",
                        help="send no chat request: memory with an empty ledger, time to /readyz")
    parser.add_argument("--release-wait", type=float, default=45.0,
                        help="after the first reading, wait up to this long for the ledger owner's idle "
                        "release (ledger_idle_release_s, default 30 s) and read again; 0: do not")
    args = parser.parse_args()
    for workers in (int(w) for w in args.workers.split(",")):
        times = []
        mems: list[Mem] = []
        after: list[Mem] | None = None
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(redis_server()) if workers > 1 else None
            for _ in range(args.reps):
                first, mems, after = measure(workers, args.idle, redis_url, not args.no_request,
                                             args.release_wait)
                times.append(first)
        spread = f" (min {min(times):.2f}, max {max(times):.2f} s)" if len(times) > 1 else ""
        what = "/readyz (no chat request sent)" if args.no_request else "first answered request"
        print(f"\n--workers {workers}: {what} {statistics.median(times):.2f} s after start{spread}")
        show(f"{args.idle:g} s after it", mems)
        if after is not None:
            show("idle, after the ledger owner let DuckDB go", after)
    return 0


def show(title: str, mems: list[Mem]) -> None:
    print(f"  {title}:")
    print(f"{'process':<30} {'pid':>7} {'RSS MB':>8} {'PSS MB':>8} {'private MB':>11}")
    for m in mems:
        print(f"{m.role:<30} {m.pid:>7} {m.rss / MB:>8.1f} {m.pss / MB:>8.1f} {m.private / MB:>11.1f}")
    total = [sum(getattr(m, f) for m in mems) / MB for f in ("rss", "pss", "private")]
    print(f"{'total':<30} {'':>7} {total[0]:>8.1f} {total[1]:>8.1f} {total[2]:>11.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
