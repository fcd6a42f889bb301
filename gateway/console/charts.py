"""Time series rows -> the JSON the charts' glue (static/console.js) hands to uPlot: one x axis
of bucket starts (Unix seconds, every bucket of the range, empty ones as 0) and one line per
value of the dimension (the top few by total, the rest summed as "other")."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from .filters import Filter
from .queries import BUCKET_S

TOP = 8


def buckets(f: Filter) -> list[int]:
    step = BUCKET_S[f.bucket]
    start = int(f.since.timestamp()) // step * step
    end = int(f.until.timestamp())
    return list(range(start, end + 1, step)) if end >= start else []


def pivot(f: Filter, rows: list[dict[str, Any]], measure: str, title: str, unit: str) -> dict[str, Any]:
    """`rows`: {t, dim, <measure>} per bucket and dimension value."""
    xs = buckets(f)
    index = {t: i for i, t in enumerate(xs)}
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        totals[_label(r["dim"])] += float(r[measure] or 0)
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    keep = set(ranked[:TOP])
    lines: dict[str, list[float]] = {name: [0.0] * len(xs) for name in ranked[:TOP]}
    if len(ranked) > TOP:
        lines["other"] = [0.0] * len(xs)
    for r in rows:
        i = index.get(int(r["t"]))
        if i is None:
            continue
        name = _label(r["dim"])
        lines[name if name in keep else "other"][i] += float(r[measure] or 0)
    return {"title": title, "unit": unit, "x": xs,
            "series": [{"label": k, "values": v} for k, v in lines.items()]}


def _label(value: Any) -> str:
    return "(none)" if value is None else str(value)


def when(stamp: Any) -> str:
    """An ISO timestamp from the ledger as a short UTC time."""
    if not stamp:
        return ""
    try:
        t = dt.datetime.fromisoformat(str(stamp)).astimezone(dt.UTC)
    except ValueError:
        return str(stamp)
    return t.strftime("%Y-%m-%d %H:%M:%S")
