"""Aggregates repetitions (medians), derives ratios and added latency, writes JSON and Markdown."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

FLOORS = ("direct", "nginx")
NONE = "\u2013"  # an en dash for "no value"
SCENARIO_TITLES = {"json-c1": "c=1", "json-c16": "c=16", "json-c64": "c=64", "stream-c16": "stream c=16"}


def _median(values: list[Any]) -> float | None:
    clean = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(statistics.median(clean), 3) if clean else None


def _max(values: list[Any]) -> float | None:
    clean = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(clean) if clean else None


def build(meta: dict[str, Any], starts: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    targets = list(dict.fromkeys([*meta["settings"]["targets"]]))
    scenarios = meta["settings"]["scenarios"]
    summary: dict[str, dict[str, Any]] = {}
    for t in targets:
        entry: dict[str, Any] = {}
        mine = [s for s in starts if s["target"] == t]
        entry["startup_s"] = _median([s["startup_s"] for s in mine])
        entry["idle_rss_mb"] = _median([s["idle_rss_mb"] for s in mine])
        entry["largest_idle_rss_mb"] = _median([s.get("largest_idle_rss_mb") for s in mine])
        peak: list[Any] = []
        for sc in scenarios:
            rs = [r for r in runs if r["target"] == t and r["scenario"] == sc]
            if not rs:
                continue
            peak += [r.get("peak_rss_mb") for r in rs]
            agg: dict[str, Any] = {
                "reps": len(rs),
                "rps": _median([r["rps"] for r in rs]),
                "p50_ms": _median([r["p50_ms"] for r in rs]),
                "p99_ms": _median([r["p99_ms"] for r in rs]),
                "errors": sum(int(r["errors"]) for r in rs),
                "target_cpu_us_per_req": _median([r.get("target_cpu_us_per_req") for r in rs]),
                "target_cores": _median([r["cpu"]["target_cores"] for r in rs]),
                "mock_cores": _median([r["cpu"]["mock_cores"] for r in rs]),
                "loadgen_cores": _median([r["cpu"]["loadgen_cores"] for r in rs]),
                "others_core0_cores": _median([r["cpu"]["others_core0_cores"] for r in rs]),
                "others_cores": _median([r["cpu"]["others_cores"] for r in rs]),
                "peak_rss_mb": _max([r.get("peak_rss_mb") for r in rs]),
                "flagged_reps": sum(1 for r in rs if r["flags"]),
                "flags": sorted({f.split(":")[0] for r in rs for f in r["flags"]}),
            }
            if sc.startswith("stream"):
                for k in ("ttfb_p50_ms", "ttfb_p99_ms", "usage_fraction", "done_fraction", "events_per_stream"):
                    agg[k] = _median([r.get(k) for r in rs])
                probes = [r["probe"] for r in rs if "probe" in r]
                if probes:
                    agg["probe"] = {
                        "events_per_read": _max([p.get("events_per_read") for p in probes]),
                        "max_gap_ms": _max([p.get("max_gap_ms") for p in probes]),
                        "ttfb_p50_ms": _median([p.get("ttfb_p50_ms") for p in probes]),
                        "ttfb_p99_ms": _median([p.get("ttfb_p99_ms") for p in probes]),
                        "usage_fraction": _median([p.get("usage_fraction") for p in probes]),
                        "errors": sum(int(p.get("errors") or 0) for p in probes),
                    }
            entry[sc] = agg
        entry["peak_rss_mb"] = _max(peak)
        summary[t] = entry
    # derived: ratios to the floors and to every other target, and latency added over direct
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for sc in scenarios:
        table: dict[str, dict[str, float | None]] = {}
        for a in targets:
            ra = summary.get(a, {}).get(sc, {}).get("rps")
            row: dict[str, float | None] = {}
            for b in targets:
                rb = summary.get(b, {}).get(sc, {}).get("rps")
                row[b] = round(ra / rb, 3) if ra and rb else None
            table[a] = row
            cell: dict[str, Any] | None = summary.get(a, {}).get(sc)
            if cell is None:
                continue
            direct = summary.get("direct", {}).get(sc)
            cell["vs_direct"] = row.get("direct")
            cell["vs_nginx"] = row.get("nginx")
            if direct and cell.get("p50_ms") is not None and direct.get("p50_ms") is not None:
                cell["added_p50_ms"] = round(cell["p50_ms"] - direct["p50_ms"], 3)
                cell["added_p99_ms"] = round(cell["p99_ms"] - direct["p99_ms"], 3)
            if direct and cell.get("ttfb_p50_ms") is not None and direct.get("ttfb_p50_ms") is not None:
                cell["added_ttfb_p50_ms"] = round(cell["ttfb_p50_ms"] - direct["ttfb_p50_ms"], 3)
            mine_probe, direct_probe = cell.get("probe", {}), (direct or {}).get("probe", {})
            if mine_probe.get("ttfb_p50_ms") is not None and direct_probe.get("ttfb_p50_ms") is not None:
                mine_probe["added_ttfb_p50_ms"] = round(mine_probe["ttfb_p50_ms"] - direct_probe["ttfb_p50_ms"], 3)
        ratios[sc] = table
    return {"meta": meta, "summary": summary, "ratios": ratios, "starts": starts, "runs": runs}


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return NONE
    if isinstance(value, float) and digits == 0 and abs(value) >= 100:
        return f"{value:,.0f}"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}" if digits else f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"
    return str(value)


def _ms(value: Any) -> str:
    if value is None:
        return NONE
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _x(value: Any) -> str:
    if value is None:
        return NONE
    if value >= 10:
        return f"{value:,.0f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def markdown(data: dict[str, Any]) -> str:
    meta, summary, ratios = data["meta"], data["summary"], data["ratios"]
    s = meta["settings"]
    scenarios = s["scenarios"]
    targets = [t for t in s["targets"] if any(sc in summary.get(t, {}) for sc in scenarios)]
    json_sc = [sc for sc in scenarios if sc.startswith("json")]
    kind = "quick smoke run" if s["quick"] else "full run"
    m = meta["machine"]
    out = [f"# Tollgate benchmarks: {meta['date']} ({kind})", ""]
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, load average at start "
               f"{', '.join(f'{x:.2f}' for x in m['load_avg'])}. Pinned: {'target + load generator on core 0, mock on core 1' if s['pinned'] else 'no'}.")
    out.append(f"Settings: {s['reps']} interleaved repetition(s), {s['duration_s']:g} s per run, {s['warmup_s']:g} s "
               f"warm-up; mock: {s['mock_chunks']} events per stream, latency {s['mock_latency_ms']:g} ms, "
               f"event delay {s['mock_chunk_delay_ms']:g} ms. Medians over repetitions; took {meta['elapsed_s']:.0f} s.")
    if meta.get("interrupted"):
        out.append("**This run was interrupted**: some targets or repetitions are missing.")
    flagged = sum(1 for r in data["runs"] if r["flags"])
    if flagged:
        out.append(f"**{flagged} of {len(data['runs'])} runs are flagged** (other processes used CPU, the mock "
                   "or the load generator was saturated, or requests failed): see the Noise section; treat those figures as rough.")
    out.append("")
    out.append("## Versions")
    out.append("")
    for t, v in meta["versions"].items():
        out.append(f"- {t}: {v}")
    out.append("")

    if json_sc:
        out.append("## Non-streaming chat completions (wrk -t1)")
        out.append("")
        head = "| target | " + " | ".join(f"req/s {SCENARIO_TITLES[sc]}" for sc in json_sc)
        head += " | " + " | ".join(f"x direct / x nginx {SCENARIO_TITLES[sc]}" for sc in json_sc) + " |"
        out += [head, "|---" * (1 + 2 * len(json_sc)) + "|"]
        for t in targets:
            row = [t]
            row += [_n(summary[t].get(sc, {}).get("rps")) for sc in json_sc]
            row += [f"{_x(summary[t].get(sc, {}).get('vs_direct'))} / {_x(summary[t].get(sc, {}).get('vs_nginx'))}"
                    for sc in json_sc]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.append("Latency, ms (p50 / p99, and p50 added over direct):")
        out.append("")
        head = "| target | " + " | ".join(f"{SCENARIO_TITLES[sc]} p50 / p99 | added p50 {SCENARIO_TITLES[sc]}"
                                          for sc in json_sc) + " |"
        out += [head, "|---" * (1 + 2 * len(json_sc)) + "|"]
        for t in targets:
            row = [t]
            for sc in json_sc:
                a = summary[t].get(sc, {})
                row += [f"{_ms(a.get('p50_ms'))} / {_ms(a.get('p99_ms'))}",
                        NONE if t == "direct" else _ms(a.get("added_p50_ms"))]
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    if "stream-c16" in scenarios:
        out.append("## Streaming chat completions, c=16 (benchmarks.streamclient)")
        out.append("")
        out.append("TTFB is the time to the first SSE event. At full load (streams back to back on 16 "
                   "connections) TTFB is mostly queueing behind the other 15 streams on the one core. The probe "
                   f"runs paced streams (one event every {s['paced_delay_ms']:g} ms) on "
                   f"{s.get('probe_concurrency', 1)} connection(s), below saturation: its TTFB is the latency a "
                   "gateway adds; more than 1 event per read means it coalesces events; a max gap near 40 ms "
                   "means a Nagle stall.")
        out.append("")
        out += ["| target | streams/s | x direct | x nginx | TTFB p50 / p99 | added TTFB p50 | total p50 / p99 "
                "| usage event | probe TTFB p50 / p99 | probe added TTFB p50 | probe events/read "
                "| probe max gap ms |", "|---" * 12 + "|"]
        for t in targets:
            a = summary[t].get("stream-c16")
            if not a:
                continue
            probe = a.get("probe", {})
            usage = a.get("usage_fraction")
            out.append(
                f"| {t} | {_n(a.get('rps'))} | {_x(a.get('vs_direct'))} | {_x(a.get('vs_nginx'))} | "
                f"{_ms(a.get('ttfb_p50_ms'))} / {_ms(a.get('ttfb_p99_ms'))} | "
                f"{NONE if t == 'direct' else _ms(a.get('added_ttfb_p50_ms'))} | "
                f"{_ms(a.get('p50_ms'))} / {_ms(a.get('p99_ms'))} | "
                f"{NONE if usage is None else f'{usage:.0%}'} | "
                f"{_ms(probe.get('ttfb_p50_ms'))} / {_ms(probe.get('ttfb_p99_ms'))} | "
                f"{NONE if t == 'direct' else _ms(probe.get('added_ttfb_p50_ms'))} | "
                f"{_n(probe.get('events_per_read'), 2)} | "
                f"{_n(probe.get('max_gap_ms'), 1)} |")
        out.append("")

    out.append("## Resources")
    out.append("")
    cpu_sc = "json-c16" if "json-c16" in scenarios else (json_sc[0] if json_sc else None)
    stream_sc = "stream-c16" if "stream-c16" in scenarios else None
    head = "| target | start-up s | idle RSS MB | largest process idle MB | peak RSS MB |"
    if cpu_sc:
        head += f" CPU µs/request ({SCENARIO_TITLES[cpu_sc]}) |"
    if stream_sc:
        head += " CPU µs/stream |"
    out += [head, "|---" * (head.count("|") - 1) + "|"]
    for t in targets:
        e = summary[t]
        row = [t, _n(e.get("startup_s"), 2), _n(e.get("idle_rss_mb"), 0), _n(e.get("largest_idle_rss_mb"), 0),
               _n(e.get("peak_rss_mb"), 0)]
        if cpu_sc:
            row.append(_n(e.get(cpu_sc, {}).get("target_cpu_us_per_req"), 0))
        if stream_sc:
            row.append(_n(e.get(stream_sc, {}).get("target_cpu_us_per_req"), 0))
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    bar = _bar(summary, scenarios)
    if bar:
        out += bar
        tg_notes = " ".join(meta["notes"].get("tollgate", []))
        if "ledger" in tg_notes and ("unavailable" in tg_notes or "not recorded" in tg_notes):
            out += ["Caveat: Tollgate logged that its usage ledger was not recording in this run, so these "
                    "figures are without the ledger's cost.", ""]
    out.append("## Throughput ratios (row / column)")
    out.append("")
    for sc in scenarios:
        table = ratios.get(sc, {})
        cols = [t for t in targets if sc in summary.get(t, {})]
        if len(cols) < 2:
            continue
        out.append(f"{SCENARIO_TITLES[sc]}:")
        out.append("")
        out += ["| | " + " | ".join(cols) + " |", "|---" * (1 + len(cols)) + "|"]
        for a in cols:
            out.append(f"| {a} | " + " | ".join(_x(table.get(a, {}).get(b)) for b in cols) + " |")
        out.append("")

    out.append("## Noise")
    out.append("")
    out.append("CPU in cores, medians over repetitions: the target, the mock (alone on core 1; near 1.0 means it "
               "was the bottleneck), and other processes on the measured core 0 / elsewhere (busy time from "
               "/proc/stat minus the benchmark's own processes).")
    out.append("")
    out += ["| target | scenario | target | mock | load gen | others core 0 | others elsewhere | flagged reps |",
            "|---" * 8 + "|"]
    for t in targets:
        for sc in scenarios:
            a = summary[t].get(sc)
            if not a:
                continue
            other = (a["others_cores"] or 0) - (a["others_core0_cores"] or 0)
            out.append(f"| {t} | {SCENARIO_TITLES[sc]} | {_n(a['target_cores'], 2)} | {_n(a['mock_cores'], 2)} | "
                       f"{_n(a['loadgen_cores'], 2)} | {_n(a['others_core0_cores'], 2)} | {max(other, 0):.2f} | "
                       f"{a['flagged_reps']}/{a['reps']} {' '.join(a['flags'])} |")
    out.append("")
    if meta["failures"] or meta["notes"]:
        out.append("## Failures and notes")
        out.append("")
        for t, msg in meta["failures"].items():
            first = str(msg).strip().splitlines()
            out.append(f"- **{t}** failed: {first[0] if first else msg}")
        for t, notes in meta["notes"].items():
            for note in notes:
                out.append(f"- {t} logged: `{note}`")
        out.append("")
    return "\n".join(out)


# DESIGN.md section 8: "our bar: >= 5x Portkey, >= 50x LiteLLM, full bundle and ledger on; aim at TensorZero"
BAR = (("portkey", 5.0), ("litellm", 50.0), ("tensorzero", 1.0))


def _bar(summary: dict[str, Any], scenarios: list[str]) -> list[str]:
    tg = summary.get("tollgate", {})
    peers = [(p, goal) for p, goal in BAR if p in summary]
    if not peers or not any(sc in tg for sc in scenarios):
        return []
    out = ["## Tollgate against the bar (DESIGN.md section 8)", "",
           "Tollgate's throughput as a multiple of each peer's (goal in brackets; TensorZero is the aim).", "",
           "| scenario | " + " | ".join(f"x {p} (goal {goal:g}x)" for p, goal in peers) + " |",
           "|---" * (1 + len(peers)) + "|"]
    for sc in scenarios:
        mine = tg.get(sc, {}).get("rps")
        cells = []
        for p, goal in peers:
            theirs = summary[p].get(sc, {}).get("rps")
            if not mine or not theirs:
                cells.append(NONE)
                continue
            ratio = mine / theirs
            cells.append(f"{_x(ratio)} {'met' if ratio >= goal else 'not met'}")
        out.append(f"| {SCENARIO_TITLES[sc]} | " + " | ".join(cells) + " |")
    out.append("")
    return out + _latency_targets(tg)


def _latency_targets(tg: dict[str, Any]) -> list[str]:
    """The benchmark issue's latency and memory targets (one worker, full bundle, ledger on)."""
    c1, probe = tg.get("json-c1", {}), tg.get("stream-c16", {}).get("probe", {})
    rows = [("added p50 at c=1", c1.get("added_p50_ms"), 0.3, "ms"),
            ("added p99 at c=1", c1.get("added_p99_ms"), 2.0, "ms"),
            ("added TTFB p50, paced streams at c=16", probe.get("added_ttfb_p50_ms"), 1.0, "ms"),
            ("idle RSS of the largest process (the worker)", tg.get("largest_idle_rss_mb"), 100.0, "MB")]
    rows = [row for row in rows if row[1] is not None]
    if not rows:
        return []
    out = ["| target | measured | goal | |", "|---|---|---|---|"]
    for what, value, goal, unit in rows:
        out.append(f"| {what} | {value:.2f} {unit} | ≤ {goal:g} {unit} | {'met' if value <= goal else 'not met'} |")
    return [*out, ""]


def write(data: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(data)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / "latest.md"]
    paths[0].write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    paths[1].write_text(text + "\n")
    paths[2].write_text(text + "\n")
    return paths
