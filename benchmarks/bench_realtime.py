"""Realtime API relay: added per-frame latency of the gateway's WebSocket relay.

    .venv/bin/python -m benchmarks.bench_realtime                  # 100 sessions x 10 msg/s, 3 x 10 s
    .venv/bin/python -m benchmarks.bench_realtime --sessions 20 --seconds 5 --rounds 1

An echo upstream (a `websockets` server in its own process: every text frame comes straight
back) is reached twice with the same load: directly, then through `tollgate serve --workers 1`
(an `openai` provider pointing at it). Each of `--sessions` WebSocket sessions sends `--rate`
text frames a second (a ~200-byte `input_audio_buffer.append`-like event, at evenly spread
phases) and times each round trip. A round trip crosses the relay twice (client -> upstream and
back), so the latency the gateway adds to one frame is half the difference of the round trips.
Direct and relayed runs alternate for `--rounds` rounds (this host is shared: its noise then hits
both alike). The gateway's CPU over each relayed window is read from /proc (the share of one
core its process tree used, and per relayed frame).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import procs

ROOT = Path(__file__).resolve().parent.parent
KEY = "tg-bench-realtime"
FRAME = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 160})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_echo(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        await asyncio.Future()


def bundle(upstream_port: int) -> str:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    return f"""schema = 1

[[provider]]
id = "echo"
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_keys = ["sk-echo"]
models = ["gpt-realtime"]

[price."gpt-realtime"]
input = 4.0
output = 16.0

[[key]]
id = "bench"
hash = "sha256:{digest}"
"""


async def session(url: str, headers: dict[str, str], rate: float, seconds: float, phase: float,
                  out: list[float]) -> int:
    """One session: `rate` frames a second for `seconds`; round trips (ms) appended to `out`."""
    from websockets.asyncio.client import connect

    sent = 0
    async with connect(url, additional_headers=headers, compression=None, max_size=None) as ws:
        await asyncio.sleep(phase)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            await ws.send(FRAME)
            while True:  # the echo of this frame (a relay may deliver a session.created first)
                reply = await ws.recv()
                if reply == FRAME:
                    break
            out.append((time.perf_counter() - t0) * 1000)
            sent += 1
            next_at = start + sent / rate
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return sent


async def run_load(url: str, headers: dict[str, str], sessions: int, rate: float, seconds: float) -> list[float]:
    out: list[float] = []
    await asyncio.gather(*(session(url, headers, rate, seconds, i / sessions / rate, out)
                           for i in range(sessions)))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"not ready: {url}")


def summary(name: str, rtts: list[float]) -> dict[str, Any]:
    return {"name": name, "frames": len(rtts), "rtt_p50_ms": round(pct(rtts, 0.5), 3),
            "rtt_p99_ms": round(pct(rtts, 0.99), 3), "rtt_mean_ms": round(statistics.fmean(rtts), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="frames a second per session")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round and target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo:
        asyncio.run(serve_echo(args.serve_echo))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    up_port, gw_port = free_port(), free_port()
    echo = procs.start("echo", [sys.executable, "-m", "benchmarks.bench_realtime", "--serve-echo", str(up_port)],
                       work / "echo.log", None, cwd=ROOT)
    (work / "policies").mkdir()
    (work / "policies" / "bundle.toml").write_text(bundle(up_port))
    gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "serve", "--policies", str(work / "policies"),
                                      "--data-dir", str(work / "data"), "--port", str(gw_port), "--workers", "1"],
                          work / "gateway.log", None, env={"TOLLGATE_LOG_LEVEL": "warning"}, cwd=ROOT)
    rounds: list[tuple[dict[str, Any], dict[str, Any], float]] = []
    try:
        wait_ready(f"http://127.0.0.1:{gw_port}/readyz")
        time.sleep(0.5)  # the echo server is up by now too (it starts in ~0.2 s)
        for _ in range(args.rounds):  # alternated, so that the shared host's noise hits both alike
            direct = asyncio.run(run_load(f"ws://127.0.0.1:{up_port}/v1/realtime?model=gpt-realtime", {},
                                          args.sessions, args.rate, args.seconds))
            pids = gateway.pids()
            cpu0, t0 = procs.cpu_seconds(pids), time.perf_counter()
            relayed = asyncio.run(run_load(f"ws://127.0.0.1:{gw_port}/v1/realtime?model=gpt-realtime",
                                           {"authorization": f"Bearer {KEY}"}, args.sessions, args.rate,
                                           args.seconds))
            cpu = (procs.cpu_seconds(pids) - cpu0) / (time.perf_counter() - t0)
            rounds.append((summary("direct", direct), summary("via tollgate", relayed), cpu))
    finally:
        gateway.stop()
        echo.stop()
    print(f"{args.sessions} sessions x {args.rate:g} frames/s, {args.rounds} rounds of {args.seconds:g} s "
          f"({args.sessions * args.rate:g} frames/s each way), host cores: {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f} (latency figures mean little on a busy host; CPU per frame holds)")
    added50, added99 = [], []
    for i, (d, r, cpu) in enumerate(rounds, 1):
        added50.append((r["rtt_p50_ms"] - d["rtt_p50_ms"]) / 2)
        added99.append((r["rtt_p99_ms"] - d["rtt_p99_ms"]) / 2)
        print(f"  round {i}: round trip p50/p99 direct {d['rtt_p50_ms']}/{d['rtt_p99_ms']} ms, via tollgate "
              f"{r['rtt_p50_ms']}/{r['rtt_p99_ms']} ms ({r['frames']} frames); added per frame p50 "
              f"{added50[-1]:.3f} ms, p99 {added99[-1]:.3f} ms; gateway CPU {cpu * 100:.0f}% of one core, "
              f"{cpu * 1e6 / (2 * args.sessions * args.rate):.0f} us per relayed frame")
    print(f"  median over rounds: added per frame p50 {statistics.median(added50):.3f} ms, "
          f"p99 {statistics.median(added99):.3f} ms")
    print(json.dumps({"rounds": [{"direct": d, "relayed": r, "gateway_cpu_cores": round(c, 3)}
                                 for d, r, c in rounds],
                      "added_p50_ms": round(statistics.median(added50), 3),
                      "added_p99_ms": round(statistics.median(added99), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
