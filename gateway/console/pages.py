"""What each page shows, gathered into a template context: one batch of fixed queries to the
ledger owner per page, plus the live snapshot and the worker's state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ..config.snapshot import KeyRuntime, Snapshot
from . import budgets, charts, health, queries
from .filters import Filter
from .ledger import Result, run
from .web import Worker

BALANCE_SQL = "SELECT * FROM balances WHERE ($1::VARCHAR IS NULL OR key_id = $1) ORDER BY key_id LIMIT 200"


async def overview(worker: Worker, snap: Snapshot, f: Filter) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    keys = sorted(snap.keys_by_id.values(), key=lambda k: k.id)
    plan = budgets.plan(snap, keys, now.timestamp())
    batch = [queries.series(f), queries.top(f, "key"), queries.top(f, "model"), queries.providers(f),
             queries.totals(f), queries.last_errors(f), queries.last_minute(now), queries.has_balances(),
             budgets.spend_query(plan), queries.has_tasks()]
    r = await run(Path(worker.settings.data_dir), batch)
    rows = int(r[4].dicts()[0]["requests"] or 0)
    latency = (await run(Path(worker.settings.data_dir), [queries.latency(f, rows)]))[0].dicts()
    lines = budgets.budget_lines(plan, r[8].dicts()) + budgets.limit_lines(keys, r[6].dicts())
    return {
        "f": f, "as_of": now.strftime("%H:%M:%S UTC"),
        "charts": [charts.pivot(f, r[0].dicts(), "cost", f"Spend by {f.by}", "USD"),
                   charts.pivot(f, r[0].dicts(), "requests", f"Requests by {f.by}", "requests")],
        "top_keys": r[1].dicts(), "top_models": r[2].dicts(),
        "provider_stats": r[3].dicts(), "latency": latency, "errors": r[5].dicts(),
        "sampled": bool(queries.sample_for(rows)),
        "limits": sorted(lines, key=lambda line: -line.fraction)[:30],
        "near": [line for line in lines if line.near],
        **await _extras(worker, f, r[7], r[9], None),
    }


def overview_live(worker: Worker, snap: Snapshot, figures: dict[str, Any]) -> dict[str, Any]:
    """What the overview takes from the running gateway, fresh on every view (the ledger's
    figures may come from the page cache)."""
    merged = health.live(worker, snap)
    return {
        "providers": health.providers(merged, snap, figures["provider_stats"], figures["latency"],
                                      figures["errors"]),
        "policy": health.policy(worker, snap),
        "workers": worker.settings.workers,
    }


async def usage(worker: Worker, f: Filter) -> dict[str, Any]:
    r = await run(Path(worker.settings.data_dir), [queries.rows(f), queries.totals(f)])
    return {"f": f, "rows": r[0].dicts(), "totals": r[1].dicts()[0], "columns": queries.USAGE_COLUMNS}


async def key_view(worker: Worker, snap: Snapshot, key: KeyRuntime, f: Filter) -> dict[str, Any]:
    f = f.for_key(key.id)
    now = dt.datetime.now(dt.UTC)
    plan = budgets.plan(snap, [key], now.timestamp())
    recent = Filter(since=f.since, until=f.until, range=f.range, key=key.id, limit=50)
    batch = [queries.series(_by_model(f)), queries.rows(recent), queries.last_minute(now, key.id),
             queries.has_balances(), queries.totals(f), budgets.spend_query(plan), queries.has_tasks()]
    r = await run(Path(worker.settings.data_dir), batch)
    series = r[0].dicts()
    totals = r[4].dicts()[0]
    lines = budgets.budget_lines(plan, r[5].dicts()) + budgets.limit_lines([key], r[2].dicts())
    return {
        "f": f, "key": key, "as_of": now.strftime("%H:%M:%S UTC"),
        "charts": [charts.pivot(f, series, "cost", "Spend by model", "USD"),
                   charts.pivot(f, series, "tokens", "Tokens by model", "tokens")],
        "recent": r[1].dicts(), "totals": totals, "limits": lines,
        "models": models(snap, key),
        **await _extras(worker, f, r[3], r[6], key.id),
    }


def _by_model(f: Filter) -> Filter:
    return Filter(since=f.since, until=f.until, range=f.range, bucket=f.bucket, by="model", key=f.key)


def models(snap: Snapshot, key: KeyRuntime) -> list[dict[str, Any]]:
    """The models this key may call, each with the price of its first target (USD per 1M tokens)."""
    multiplier = key.price_multiplier * (key.group.price_multiplier if key.group else 1.0)
    out = []
    for name in snap.models_for(key):
        route = snap.routes[name]
        target = route.tiers[0][0] if route.tiers and route.tiers[0] else None
        price = snap.price_for(target.provider, target.model) if target else None
        rates = price.rates if price else None
        out.append({
            "name": name, "alias": route.is_alias,
            "input": rates.input * multiplier if rates else None,
            "output": rates.output * multiplier if rates else None,
            "per_request": rates.per_request * multiplier if rates and rates.per_request else None,
        })
    return out


async def _extras(worker: Worker, f: Filter, has_balances: Result, has_tasks: Result,
                  key: str | None) -> dict[str, Any]:
    """Prepaid balances and recent tasks, in one more batch, from the views the ledger has:
    `balances` (prepaid credits) and `tasks`; None for a view it lacks (an older ledger)."""
    batch = ([(BALANCE_SQL, [key])] if has_balances.scalar() else []) + (
        [queries.tasks(f, key)] if has_tasks.scalar() else [])
    r = iter(await run(Path(worker.settings.data_dir), batch)) if batch else iter(())
    return {"balances": next(r).dicts() if has_balances.scalar() else None,
            "tasks": next(r).dicts() if has_tasks.scalar() else None}
