"""The task engine's costs (docs/tasks.md), reported as figures and ratios:

1. the store and engine in-process on a real SQLite file: tasks stored per second, and the cost
   of one poll-and-settle of a task whose upstream answers at once (a fake adapter);
2. `POST /v1/videos` through a real `tollgate serve` (1 worker) vs the same fake OpenAI video
   upstream called directly: median latency of sequential submits and the gateway's overhead
   (admission, price reservation, forward, the task stored, the usage row spooled).

    .venv/bin/python -m benchmarks.bench_tasks [--tasks 2000] [--submits 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from gateway.tasks.adapter import Seen
from gateway.tasks.engine import TaskEngine
from gateway.tasks.store import TaskRow, TaskStore
from gateway.usage.record import UsageRecord
from tests.gateway_process import GatewayProcess
from tests.tasks_support import KEYS, start_upstreams, stop_upstreams, write_bundle


class _Hooks:
    def __init__(self) -> None:
        self.rows = 0

    def record(self, row: UsageRecord) -> None:
        self.rows += 1

    async def refund(self, task: TaskRow) -> None:
        return None


class _Instant:
    family, refund_type = "video", "video_refund"

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        failed = task.upstream_id.endswith("7")
        return Seen("failed" if failed else "completed", b'{"status": "done"}', True)


def _row(i: int) -> TaskRow:
    return TaskRow(
        id=f"video_{i}", provider="oa", upstream_id=f"video_{i}", key_id="alice", group=None, model="sora-2",
        requested_model="sora-2", action="video", mode=None, endpoint="videos", request_id=f"req_{i}",
        cost=Decimal("0.4"), tags=(), revision="bench", status="queued", doc=b"{}", submitted_at=time.time() - 10,
        family="video",
    )  # fmt: skip


async def _engine(n: int, directory: Path) -> tuple[float, float, int]:
    hooks = _Hooks()
    engine = TaskEngine(TaskStore(directory / "tasks.sqlite"), 0.01, hooks)
    engine.register(_Instant())
    await engine.store.open()
    t0 = time.perf_counter()
    for i in range(n):
        await engine.add(_row(i))
    added = time.perf_counter() - t0
    time.sleep(0.02)  # every task due
    t0 = time.perf_counter()
    while await engine.poll_once():
        pass
    polled = time.perf_counter() - t0
    await engine.stop()
    return n / added, polled / n * 1e6, hooks.rows


def _latencies(url: str, headers: dict[str, str], n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post(url, json={"prompt": f"clip {i}", "model": "sora-2", "seconds": "4"}, headers=headers)
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return out


def _http(n: int, directory: Path) -> tuple[float, float]:
    ups = start_upstreams()
    try:
        policies = write_bundle(directory, ups)
        with GatewayProcess(policies, directory / "data", env={"TOLLGATE_MJ_POLL_S": "3600"}) as gw:
            direct_headers = {"authorization": "Bearer sk-video-upstream"}
            via_headers = {"authorization": f"Bearer {KEYS['bob']}"}
            _latencies(f"{ups[0].base_url}/videos", direct_headers, 20)  # warm-up
            _latencies(f"{gw.url}/v1/videos", via_headers, 20)
            direct = statistics.median(_latencies(f"{ups[0].base_url}/videos", direct_headers, n))
            via = statistics.median(_latencies(f"{gw.url}/v1/videos", via_headers, n))
    finally:
        stop_upstreams(ups)
    return direct, via


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--submits", type=int, default=300)
    args = parser.parse_args()
    print(f"host load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        stored, per_task_us, rows = asyncio.run(_engine(args.tasks, Path(tmp)))
    print(f"engine: {stored:,.0f} tasks stored/s; poll + settle {per_task_us:,.0f} us per task "
          f"({args.tasks} tasks, {rows} end and refund rows)")
    with tempfile.TemporaryDirectory() as tmp:
        direct, via = _http(args.submits, Path(tmp))
    print(f"POST /v1/videos, median of {args.submits} sequential submits: upstream direct {direct:.2f} ms, "
          f"through the gateway {via:.2f} ms (+{via - direct:.2f} ms, {via / direct:.2f}x)")


if __name__ == "__main__":
    main()
