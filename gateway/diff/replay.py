"""`--replay DAYS`: the ledger's last DAYS re-priced under NEW, and what NEW would refuse or
send elsewhere. Queries go through the ledger owner (usage/client.py: a running gateway's
socket, or ownership for the one call) or a Parquet directory; each is one read-only SELECT."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..billing.pricing import compute_cost
from ..config.snapshot import KeyRuntime, Snapshot
from ..core.usage import TokenUsage
from .access import model_universe, static_decisions
from .replay_sql import PriceTable, Rates, admitted_sql, python_rows_sql, simple_rates, totals_sql
from .report import Money, Replay

Query = Callable[[str], dict[str, Any]]


class ReplayError(Exception):
    pass


def owner_query(data_dir: Path) -> Query:
    from ..usage.client import LedgerUnavailable, call

    def query(sql: str) -> dict[str, Any]:
        try:
            answer = call(data_dir, {"op": "query", "sql": sql})
        except LedgerUnavailable as exc:
            raise ReplayError(f"{exc} (is the gateway using {data_dir} healthy?)") from None
        if "error" in answer:
            raise ReplayError(str(answer["error"]))
        return answer

    return query


def parquet_query(directory: Path) -> tuple[Query, Callable[[], None]]:
    from ..usage.readonly_query import ParquetLedger, QueryError

    try:
        ledger = ParquetLedger(directory)
    except QueryError as exc:
        raise ReplayError(str(exc)) from None

    def query(sql: str) -> dict[str, Any]:
        try:
            return ledger.query(sql)
        except QueryError as exc:
            raise ReplayError(str(exc)) from None

    return query, ledger.close


def _rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]


def key_multiplier(old: Snapshot, new: Snapshot, key_id: str | None) -> float:
    """As the relay computes it (server/exchange.py): the key's times its group's, in floats.
    A key NEW removed keeps OLD's multiplier (its requests are reported as denied anyway)."""
    key = new.keys_by_id.get(key_id or "") or old.keys_by_id.get(key_id or "")
    if key is None:
        return 1.0
    return key.price_multiplier * (key.group.price_multiplier if key.group else 1.0)


def price_table(old: Snapshot, new: Snapshot, has_task_id: bool = True) -> PriceTable:
    """NEW's prices, and the rates of each with each distinct key multiplier."""
    mults: dict[float, int] = {1.0: 0}
    keys: dict[str, int] = {}
    for key_id in sorted(old.keys_by_id.keys() | new.keys_by_id.keys()):
        m = key_multiplier(old, new, key_id)
        if m != 1.0:
            keys[key_id] = mults.setdefault(m, len(mults))
    names: dict[str, tuple[int, bool]] = {}
    rates: dict[tuple[int, int], Rates] = {}
    for pid, (name, price) in enumerate(sorted(new.prices.items())):
        found = {mid: simple_rates(price, m) for m, mid in mults.items()}
        in_python = any(r is None for r in found.values())
        names[name] = (pid, in_python)
        if not in_python:
            rates.update({(pid, mid): r for mid, r in found.items() if r is not None})
    return PriceTable(names, keys, rates, has_task_id)


def replay(old: Snapshot, new: Snapshot, query: Query, days: int, now: datetime | None = None) -> Replay:
    now = now or datetime.now(UTC)
    since = (now - timedelta(days=days)).isoformat(timespec="seconds")
    columns = query("SELECT * FROM usage LIMIT 0")["columns"]
    table = price_table(old, new, has_task_id="task_id" in columns)
    result = Replay(days=days, since=since, total=Money(), by_key={}, by_group={}, by_model={},
                    denied={}, denied_reasons={}, rerouted={}, unpriced=0)
    try:
        totals = query(totals_sql(table, since, "BIGINT"))
    except ReplayError as exc:
        if "overflow" not in str(exc).lower():
            raise
        totals = query(totals_sql(table, since, "HUGEINT"))  # huge token counts: exact, slower
    _totals(result, totals)
    python_sql = python_rows_sql(table, since)
    if python_sql:
        _python_priced(result, old, new, query(python_sql))
    _admission(result, old, new, query(admitted_sql(since)), now)
    return result


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _totals(result: Replay, answer: dict[str, Any]) -> None:
    if answer.get("truncated"):
        result.notes.append("more than 10,000 keys, groups and models: the per-item lists are cut")
    levels = {3: ("by_key", "key_id"), 5: ("by_group", "group"), 6: ("by_model", "served_model")}
    for row in _rows(answer):
        new = Decimal(int(row["new_nanos"] or 0)).scaleb(-9) + _money(row["carried_cost"])
        money = Money(_money(row["old_cost"]), new, int(row["requests"]))
        level = int(row["level"])
        if level == 7:
            result.total = money
            result.unpriced = int(row["unpriced"])
        elif level in levels:
            attr, column = levels[level]
            getattr(result, attr)[row[column] if row[column] is not None else "(none)"] = money


def _python_priced(result: Replay, old: Snapshot, new: Snapshot, answer: dict[str, Any]) -> None:
    """Tiered and audio prices: `compute_cost` itself, once per distinct token combination."""
    if answer.get("truncated"):
        result.notes.append("tiered prices: only the first 10,000 distinct token combinations re-priced")
    for row in _rows(answer):
        usage = TokenUsage(prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                           cached_tokens=row["cached_tokens"], cache_write_tokens=row["cache_write_tokens"],
                           reasoning_tokens=row["reasoning_tokens"], images=row["images"],
                           audio_seconds=row["audio_seconds"], source="upstream")
        price = new.price_for(row["provider"], row["served_model"])
        cost = compute_cost(price, usage, key_multiplier(old, new, row["key_id"])) or Decimal(0)
        amount = cost * int(row["n"])
        result.total.new += amount
        for attr, name in (("by_key", row["key_id"]), ("by_group", row["group"]),
                           ("by_model", row["served_model"])):
            bucket = getattr(result, attr).setdefault(name if name is not None else "(none)", Money())
            bucket.new += amount


def _admission(result: Replay, old: Snapshot, new: Snapshot, answer: dict[str, Any], now: datetime) -> None:
    if answer.get("truncated"):
        result.notes.append("more than 10,000 (key, model, provider) combinations: "
                            "denials counted on the first")
    models = model_universe(old, new)
    decided, old_decided = static_decisions(new, models), static_decisions(old, models)
    denied: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    rerouted: dict[str, int] = defaultdict(int)
    for row in _rows(answer):
        n, key_id, model = int(row["n"]), row["key_id"], row["requested_model"]
        reason, route_name = _verdict(new, new.keys_by_id.get(key_id), key_id, model, decided, now)
        if reason is not None:
            denied[key_id] += n
            reasons[reason] += n
            before, _ = _verdict(old, old.keys_by_id.get(key_id), key_id, model, old_decided, now)
            if before is not None:  # rows OLD would refuse too (served under an older bundle)
                result.denied_by_old += n
        elif route_name is not None and (row["provider"], row["served_model"]) not in _targets(
                new, route_name):
            rerouted[model] += n
    result.denied, result.denied_reasons, result.rerouted = dict(denied), dict(reasons), dict(rerouted)


def _verdict(snap: Snapshot, key: KeyRuntime | None, key_id: str, model: str,
             decided: dict[tuple[str, str], Any], now: datetime) -> tuple[str | None, str | None]:
    """(why NEW refuses the request, or None; the route NEW would send it to)."""
    if key is None:
        return "key removed", None
    if key.disabled:
        return "key disabled", None
    if key.expires is not None and key.expires <= now:
        return "key expired", None
    if not key.allows_model(model):
        return "model not allowed", None
    rule = decided.get((key_id, model))
    if rule is not None and rule.deny is not None:
        return f"rule {rule.id}", None
    name = (rule.route or rule.set_model or model) if rule is not None else model
    if name not in snap.routes:
        return "model removed", None
    return None, name


def _targets(snap: Snapshot, name: str) -> set[tuple[str, str]]:
    """Every (provider, upstream model) a route can use, its fallbacks' included."""
    out: set[tuple[str, str]] = set()
    for route_name in (name, *snap.routes[name].fallbacks):
        route = snap.routes.get(route_name)
        if route is not None:
            out.update((t.provider, t.model) for tier in route.tiers for t in tier)
    return out
