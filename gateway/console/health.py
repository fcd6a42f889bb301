"""Provider health as this worker sees it (breaker state) beside the ledger's view (error rate,
latency, last errors), and the policy bundle's status (revision, load time, last reload error)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config.snapshot import Snapshot
from .charts import when
from .web import Worker


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    id: str
    kind: str
    breaker: str  # closed | open | half-open (this worker's)
    keys: int  # API keys configured (never shown)
    requests: int
    error_rate: float | None
    p50: float | None
    p95: float | None
    last_errors: list[str]


def providers(worker: Worker, snap: Snapshot, stats: list[dict[str, Any]], latency: list[dict[str, Any]],
              errors: list[dict[str, Any]]) -> list[ProviderHealth]:
    states = worker.breakers.states()
    by_id = {r["provider"]: r for r in stats}
    quantiles = {r["provider"]: r["q"] or [None, None] for r in latency}
    out = []
    for pid in sorted(set(snap.providers) | set(by_id)):
        runtime = snap.providers.get(pid)
        row = by_id.get(pid, {})
        last = [f"{when(e['started_at'])} {e['status']} {e['error_type'] or ''}".strip()
                for e in errors if e["provider"] == pid]
        out.append(ProviderHealth(
            id=pid,
            kind=runtime.kind if runtime else "(not in this bundle)",
            breaker=states.get(pid, "closed"),
            keys=len(runtime.api_keys) if runtime else 0,
            requests=int(row.get("requests") or 0),
            error_rate=_float(row.get("error_rate")),
            p50=_float(quantiles.get(pid, [None, None])[0]),
            p95=_float(quantiles.get(pid, [None, None])[1]),
            last_errors=last,
        ))
    return out


def policy(worker: Worker, snap: Snapshot) -> dict[str, Any]:
    store = worker.store
    return {
        "revision": snap.revision,
        "loaded_at": _stamp(snap.loaded_at),
        "directory": snap.directory,
        "reloads": store.reloads,
        "last_error": [str(p) for p in store.last_error],
        "last_error_at": _stamp(store.last_error_at),
        "provider_count": len(snap.providers), "model_count": len(snap.routes),
        "key_count": len(snap.keys_by_id), "rule_count": len(snap.rules.rules),
        "warnings": list(snap.warnings),
    }


def _stamp(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
