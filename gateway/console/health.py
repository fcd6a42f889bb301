"""Provider health as this worker sees it (breaker state) beside the ledger's view (error rate,
latency, last errors), and the policy bundle's status (revision, load time, last reload error)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config.snapshot import Snapshot
from ..ops.health import worker_document
from ..ops.health_merge import merged_health, read_documents
from .charts import when
from .web import Worker


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    id: str
    kind: str
    breaker: str  # closed | open | half-open: the worst over the machine's workers
    in_flight: int
    benched: list[str]  # "key sk-...a1b2: <reason> (401) until ..."; keys masked by ops/
    requests: int
    error_rate: float | None
    p50: float | None
    p95: float | None
    last_errors: list[str]


def live(worker: Worker, snap: Snapshot) -> dict[str, Any]:
    """Breakers and keys of every provider, merged over the machine's live workers (ops/), with
    this worker's part taken now: what `GET /admin/providers` answers."""
    own = worker_document(snap.providers, worker.breakers.all(), worker.keyrings(), worker.health)
    return merged_health(snap, read_documents(Path(worker.settings.data_dir), own))


def providers(merged: dict[str, Any], snap: Snapshot, stats: list[dict[str, Any]],
              latency: list[dict[str, Any]], errors: list[dict[str, Any]]) -> list[ProviderHealth]:
    by_id = {r["provider"]: r for r in stats}
    quantiles = {r["provider"]: r["q"] or [None, None] for r in latency}
    now_live = {p["id"]: p for p in merged.get("providers", [])}
    out = []
    for pid in sorted(set(snap.providers) | set(by_id)):
        runtime, row, state = snap.providers.get(pid), by_id.get(pid, {}), now_live.get(pid, {})
        keys = state.get("keys", [])
        out.append(ProviderHealth(
            id=pid,
            kind=runtime.kind if runtime else "(not in this bundle)",
            breaker=str(state.get("breaker", {}).get("state", "closed")),
            in_flight=sum(int(k.get("in_flight", 0)) for k in keys),
            benched=[_bench(k) for k in keys if k.get("benched")],
            requests=int(row.get("requests") or 0),
            error_rate=_float(row.get("error_rate")),
            p50=_float(quantiles.get(pid, [None, None])[0]),
            p95=_float(quantiles.get(pid, [None, None])[1]),
            last_errors=[f"{when(e['started_at'])} {e['status']} {e['error_type'] or ''}".strip()
                         for e in errors if e["provider"] == pid],
        ))
    return out


def _bench(key: dict[str, Any]) -> str:
    bench = key["benched"]
    until = "until a provider test passes" if bench.get("until_test") else f"until {when(bench.get('until'))}"
    status = f" ({bench['status']})" if bench.get("status") else ""
    return f"key {key.get('key', '?')}: {bench.get('reason') or 'refused'}{status} {until}"


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
