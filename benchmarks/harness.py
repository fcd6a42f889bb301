"""`python -m benchmarks`: Tollgate against the no-logic floor (direct, nginx) and its peers
(LiteLLM, Portkey, TensorZero), all in front of the same mock upstream.

Each gateway is pinned to core 0 together with the load generator; the mock is alone on core 1.
Repetitions are interleaved (every target once per repetition, the order rotated), and each
target is started afresh per repetition, so start-up time is measured every time. See README.md.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import os
import platform
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen, procs, report
from benchmarks.targets import ALL, Context, Running, Target, TargetError, ensure_apt, wait_ready

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCENARIOS: dict[str, tuple[str, int]] = {
    "json-c1": ("json", 1),
    "json-c16": ("json", 16),
    "json-c64": ("json", 64),
    "stream-c16": ("stream", 16),
}
# a run is flagged when this much CPU (in cores) went to other processes meanwhile
NOISE_CORE0 = 0.05  # on the measured core (target + load generator)
NOISE_OTHER = 0.25  # anywhere else
MOCK_BOUND = 0.85  # the mock used this much of its core: it may have been the bottleneck
LOADGEN_BOUND = 0.85  # the load generator used this much of the shared core (direct only gets there)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=",".join(t for t in ALL if t != "tollgate-base"),
                   help=f"comma-separated, from: {', '.join(ALL)} (default: all but tollgate-base)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target start")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repetition, 2 s runs, 0.5 s warm-up, short paced probe")
    p.add_argument("--probe-streams", type=int, default=64,
                   help="paced streams for the coalescing/Nagle/latency probe (0: skip)")
    p.add_argument("--probe-concurrency", type=int, default=16,
                   help="connections of the paced probe (default 16: TTFB at c=16 below saturation)")
    p.add_argument("--mock-chunks", type=int, default=20, help="content events per mock stream")
    p.add_argument("--mock-latency-ms", type=float, default=0.0)
    p.add_argument("--mock-chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--paced-delay-ms", type=float, default=5.0, help="event pacing of the probe streams")
    p.add_argument("--no-install", action="store_true", help="skip peers that are not installed yet")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--base-repo", type=Path,
                   help="another checkout with its own .venv, benchmarked as target tollgate-base")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    p.add_argument("--name", help="results file name (default: the date, plus -quick for --quick)")
    p.add_argument("--work", type=Path, default=HERE / ".work", help="installs, configs, logs")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 2.0, 0.5
        args.probe_streams = min(args.probe_streams, 16)
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for t in args.target_list:
        if t not in ALL:
            p.error(f"unknown target {t!r}")
    for s in args.scenario_list:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    if args.reps < 1 or args.duration <= 0:
        p.error("--reps must be >= 1 and --duration > 0")
    return args


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1).strip() if m else ""
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "load_avg": os.getloadavg()}


def start_mock(args: argparse.Namespace, ctx: Context, cpus: str | None) -> procs.Managed:
    argv = [sys.executable, "-m", "benchmarks.mock_upstream", "--port", str(ctx.mock_port),
            "--chunks", str(args.mock_chunks), "--latency-ms", str(args.mock_latency_ms),
            "--chunk-delay-ms", str(args.mock_chunk_delay_ms), "--paced-delay-ms", str(args.paced_delay_ms)]
    mock = procs.start("mock", argv, ctx.logs / "mock.log", cpus, cwd=REPO)
    deadline = time.perf_counter() + 20
    while time.perf_counter() < deadline:
        if not mock.alive():
            raise SystemExit(f"the mock upstream exited:\n{mock.log_tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", ctx.mock_port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return mock
            conn.close()
        except OSError:
            pass
        time.sleep(0.05)
    mock.stop()
    raise SystemExit("the mock upstream did not answer within 20 s")


def flags_for(cpu: dict[str, float], errors: int, total: int, cap_hit: bool = False) -> list[str]:
    flags = []
    if cpu["others_core0_cores"] > NOISE_CORE0:
        flags.append(f"noisy-core0:{cpu['others_core0_cores']:.2f}")
    if cpu["others_cores"] - cpu["others_core0_cores"] > NOISE_OTHER:
        flags.append(f"noisy-other:{cpu['others_cores'] - cpu['others_core0_cores']:.2f}")
    if cpu["mock_cores"] > MOCK_BOUND:
        flags.append(f"mock-bound:{cpu['mock_cores']:.2f}")
    if cpu["loadgen_cores"] > LOADGEN_BOUND:
        flags.append(f"loadgen-bound:{cpu['loadgen_cores']:.2f}")
    if errors and errors > max(1, total // 1000):
        flags.append(f"errors:{errors}")
    if cap_hit:
        flags.append("request-cap-hit")
    return flags


def measure(args: argparse.Namespace, ctx: Context, target: str, scenario: str, rep: int, running: Running,
            mock: procs.Managed, wrk: str) -> dict[str, Any]:
    kind, concurrency = SCENARIOS[scenario]
    pgid = running.managed.pgid if running.managed else None
    cpus = ctx.target_cpus
    cap_hit = False
    with procs.RssSampler(pgid) as rss, procs.CpuWindow(pgid, mock.pgid, cpus or "0") as window:
        if kind == "json":
            res = loadgen.run_wrk(wrk, running.endpoint, concurrency, args.duration, cpus, ctx.work)
            count = int(res["requests"])
            errors = int(res["non_2xx"]) + int(res["socket_errors"])
            cap_hit = bool(res["cap_hit"])
        else:
            res = loadgen.run_streams(REPO, running.endpoint, concurrency, args.duration, cpus,
                                      max_streams=int(args.duration * 200_000))
            count = int(res["streams"])
            errors = int(res["errors"])
            res["rps"] = res["streams_per_s"]
            res["p50_ms"], res["p99_ms"] = res["total_p50_ms"], res["total_p99_ms"]
    cpu = window.result
    record: dict[str, Any] = {
        "target": target, "scenario": scenario, "rep": rep, **res,
        "errors": errors,
        "cpu": {k: round(v, 4) for k, v in cpu.items()},
        "target_cpu_us_per_req": round(cpu["target_cpu_s"] / count * 1e6, 1) if count and pgid else None,
        "peak_rss_mb": round(rss.peak / 2**20, 1) if pgid else None,
        "flags": flags_for(cpu, errors, count, cap_hit),
    }
    if kind == "stream" and args.probe_streams > 0:
        # arrivals spread over one paced stream's length, as independent clients would arrive
        stagger = args.paced_delay_ms * (args.mock_chunks + 1) / max(1, args.probe_concurrency)
        probe = loadgen.run_streams(REPO, running.endpoint, args.probe_concurrency, 30.0, cpus,
                                    max_streams=args.probe_streams, paced=True, stagger_ms=stagger)
        record["probe"] = {k: probe.get(k) for k in (
            "streams", "ttfb_p50_ms", "ttfb_p99_ms", "total_p50_ms", "events_per_stream", "reads_per_stream", "events_per_read",
            "max_gap_ms", "gap_p99_ms", "usage_fraction", "done_fraction", "errors", "error_samples")}
    return record


def warm_up(args: argparse.Namespace, ctx: Context, running: Running, wrk: str, scenarios: list[str]) -> None:
    if args.warmup <= 0:
        return
    if any(SCENARIOS[s][0] == "json" for s in scenarios):
        loadgen.run_wrk(wrk, running.endpoint, 16, args.warmup, ctx.target_cpus, ctx.work)
    if any(SCENARIOS[s][0] == "stream" for s in scenarios):
        loadgen.run_streams(REPO, running.endpoint, 16, args.warmup / 2, ctx.target_cpus, max_streams=100_000)


def log_notes(running: Running) -> list[str]:
    """Distinct warning/error lines a target logged (e.g. a disabled ledger), for the report."""
    if running.managed is None:
        return []
    try:
        text = running.managed.log.read_text(errors="replace")
    except OSError:
        return []
    seen: list[str] = []
    for line in text.splitlines():
        if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line):
            clean = re.sub(r"^\S+ \S+ ", "", line.strip())[:200]  # drop a leading timestamp
            if clean not in seen:
                seen.append(clean)
    return seen[:10]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop what was started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    atexit.register(procs.stop_all)
    signal.signal(signal.SIGTERM, _interrupt)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    pin = not args.no_pin and cores >= 2 and shutil.which("taskset") is not None
    if not pin:
        log("not pinning (fewer than 2 cores, --no-pin, or no taskset): numbers are less comparable")
    target_cpus, mock_cpus = ("0", "1") if pin else (None, None)
    if pin:
        os.sched_setaffinity(0, {1})  # the harness itself stays off the measured core
    ctx = Context(repo=REPO, work=work, mock_port=0, target_cpus=target_cpus, install=not args.no_install,
                  base_repo=args.base_repo)
    from benchmarks.targets import free_port

    ctx.mock_port = free_port()
    try:
        wrk = ensure_apt("wrk", "wrk", ctx.logs / "install-wrk.log")
    except TargetError as exc:
        log(f"wrk is required: {exc}")
        return 2

    started = dt.datetime.now()
    meta: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "machine": machine(),
        "settings": {"reps": args.reps, "duration_s": args.duration, "warmup_s": args.warmup, "quick": args.quick,
                     "scenarios": args.scenario_list, "targets": args.target_list, "pinned": pin,
                     "mock_chunks": args.mock_chunks, "mock_latency_ms": args.mock_latency_ms,
                     "mock_chunk_delay_ms": args.mock_chunk_delay_ms, "paced_delay_ms": args.paced_delay_ms,
                     "probe_streams": args.probe_streams,
                     "probe_concurrency": args.probe_concurrency},
        "versions": {}, "failures": {}, "notes": {},
    }
    targets: dict[str, Target] = {}
    for name in args.target_list:
        target = ALL[name]()
        log(f"preparing {name}")
        try:
            target.prepare(ctx)
            meta["versions"][name] = target.version(ctx)
            targets[name] = target
        except TargetError as exc:
            log(f"{name}: skipped: {exc}")
            meta["failures"][name] = f"install/prepare: {exc}"

    mock = start_mock(args, ctx, mock_cpus)
    log(f"mock upstream on 127.0.0.1:{ctx.mock_port} (core {mock_cpus}), targets on core {target_cpus}")
    starts: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    try:
        order = list(targets)
        for rep in range(args.reps):
            rotated = order[rep % len(order):] + order[:rep % len(order)] if order else []
            for name in rotated:
                target = targets[name]
                running: Running | None = None
                try:
                    log(f"rep {rep + 1}/{args.reps}: starting {name}")
                    running = target.launch(ctx)
                    startup = wait_ready(running, target.startup_timeout)
                    idle = procs.RssSampler(running.managed.pgid if running.managed else None)
                    idle_rss = idle.sample()
                    starts.append({"target": name, "rep": rep,
                                   "startup_s": round(startup, 3) if running.managed else None,
                                   "idle_rss_mb": round(idle_rss / 2**20, 1) if running.managed else None,
                                   "largest_idle_rss_mb": round(procs.largest_rss_bytes(
                                       running.managed.pgid) / 2**20, 1) if running.managed else None})
                    warm_up(args, ctx, running, wrk, args.scenario_list)
                    for scenario in args.scenario_list:
                        record = measure(args, ctx, name, scenario, rep, running, mock, wrk)
                        runs.append(record)
                        extra = ""
                        if "probe" in record:
                            pr = record["probe"]
                            extra = (f", ttfb p50 {record.get('ttfb_p50_ms')} ms, probe events/read "
                                     f"{pr.get('events_per_read')}, max gap {pr.get('max_gap_ms')} ms")
                        log(f"  {name} {scenario}: {record['rps']} /s, p50 {record['p50_ms']} ms, "
                            f"p99 {record['p99_ms']} ms, errors {record['errors']}{extra} {' '.join(record['flags'])}")
                except TargetError as exc:
                    log(f"{name} rep {rep + 1}: failed: {exc}")
                    meta["failures"].setdefault(name, f"rep {rep + 1}: {exc}")
                finally:
                    if running is not None:
                        notes = log_notes(running)
                        if notes:
                            meta["notes"][name] = notes
                        running.stop()
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        meta["interrupted"] = True
    finally:
        mock_cpu = procs.cpu_seconds(mock.pids())
        mock.stop()
    meta["mock_cpu_s_total"] = round(mock_cpu, 2)
    meta["elapsed_s"] = round((dt.datetime.now() - started).total_seconds(), 1)
    data = report.build(meta, starts, runs)
    name = args.name or (started.strftime("%Y-%m-%d") + ("-quick" if args.quick else ""))
    paths = report.write(data, args.out, name)
    for path in paths:
        log(f"wrote {path}")
    print(report.markdown(data))
    return 0
