"""Provider health across workers: each worker publishes its document (health.py) as a small
JSON file under `<data-dir>/health/` about once a second; `merged_health` reads the fresh ones
and combines them: counts add up, a key benched in any worker is shown benched (with that
worker's reason), the breaker shows its worst state, percentiles come from the pooled samples.
(docs/architecture.md, "Provider operations and alerts", says why files rather than Redis.)"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config.snapshot import ProviderRuntime, Snapshot
from ..redact import mask_key
from .health import BUCKET_BASE

FRESH_S = 5.0  # a file older than this is a worker that is gone
_ORDER = {"closed": 0, "half-open": 1, "open": 2}


def health_dir(data_dir: Path) -> Path:
    return data_dir / "health"


def publish(data_dir: Path, doc: dict[str, Any]) -> None:
    """Replace this worker's file atomically (readers never see half of one)."""
    folder = health_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"worker-{doc['pid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def withdraw(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (health_dir(data_dir) / f"worker-{os.getpid()}.json").unlink()


def read_documents(data_dir: Path, own: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The fresh documents of every worker; `own` (this worker's, just built) replaces its file."""
    docs = [own] if own is not None else []
    folder = health_dir(data_dir)
    now = time.time()
    for path in sorted(folder.glob("worker-*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a worker gone mid-write, or a stray file
        if not isinstance(doc, dict) or now - float(doc.get("at", 0)) > FRESH_S:
            continue
        if own is None or doc.get("pid") != own["pid"]:
            docs.append(doc)
    return docs


def merged_health(snap: Snapshot, docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Plain data for `GET /admin/providers`, /metrics and the console."""
    docs = list(docs)
    providers = [_provider(p, [d["providers"].get(pid) for d in docs if pid in d.get("providers", {})])
                 for pid, p in sorted(snap.providers.items())]
    return {"at": datetime.now(UTC).isoformat(), "workers": len(docs), "providers": providers}


def _provider(provider: ProviderRuntime, parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    present = [p for p in parts if p]
    breakers = [p["breaker"] for p in present if p.get("breaker")]
    breaker = {"state": "closed", "since": None}
    if breakers:
        worst = max(breakers, key=lambda b: (_ORDER.get(b["state"], 0), -float(b["since"] or 0)))
        breaker = {"state": worst["state"], "since": _iso(worst["since"])}
    keys = [_key(provider, index, [p["keys"].get(str(index)) for p in present])
            for index in range(max(1, len(provider.api_keys)))]
    return {"id": provider.id, "kind": provider.kind, "breaker": breaker, "keys": keys}


def _key(provider: ProviderRuntime, index: int, parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    present = [p for p in parts if p]
    recent = [p.get("recent") or {} for p in present]
    n = sum(int(r.get("n", 0)) for r in recent)
    errors = sum(int(r.get("failed", 0)) for r in recent)
    hist: dict[int, int] = {}
    for r in recent:
        for bucket, count in (r.get("hist") or {}).items():
            hist[int(bucket)] = hist.get(int(bucket), 0) + int(count)
    benched = next((p["benched"] for p in present if p.get("benched")), None)
    if benched is not None:
        benched = {**benched, "since": _iso(benched["since"]), "until": _iso(benched["until"])}
    secret = provider.api_keys[index] if index < len(provider.api_keys) else ""
    return {
        "index": index,
        "key": mask_key(secret),
        "benched": benched,
        "in_flight": sum(int(p.get("in_flight", 0)) for p in present),
        "requests": sum(int(p.get("requests", 0)) for p in present),
        "errors": sum(int(p.get("errors", 0)) for p in present),
        "recent_requests": n,
        "error_rate": round(errors / n, 4) if n else None,
        "p50_ms": _percentile(hist, n, 0.50),
        "p95_ms": _percentile(hist, n, 0.95),
    }


def _percentile(hist: dict[int, int], n: int, q: float) -> float | None:
    """The geometric middle of the bucket holding the q-quantile (within ~12%)."""
    if not n:
        return None
    rank, seen = q * n, 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(BUCKET_BASE ** (bucket + 0.5), 1) if bucket else 1.0
    return None


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(float(at), UTC).isoformat()
