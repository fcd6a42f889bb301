"""Budgets and rate limits against what the ledger shows: spend in the current budget period
(calendar-aligned in the bundle's time zone, config/periods.py) and requests and tokens in the
last minute. Read from the ledger, so every worker's traffic counts (the limiter's own counters
are per worker unless they live in Redis)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..config.periods import Calendar, Window
from ..config.snapshot import KeyRuntime, Snapshot
from ..config.types import Budget
from . import queries
from .queries import Query

NEAR = 0.8  # a budget or limit this used is "near exhaustion"


@dataclass(frozen=True, slots=True)
class Line:
    scope: str  # "key" or "group"
    id: str
    what: str  # "budget (month)", "rpm", "tpm", "concurrency"
    limit: float
    used: float | None  # None: not measurable from the ledger (concurrency)
    resets: str  # when the period ends, or "rolling minute"

    @property
    def left(self) -> float | None:
        return None if self.used is None else max(self.limit - self.used, 0.0)

    @property
    def fraction(self) -> float:
        if self.used is None:
            return 0.0
        return self.used / self.limit if self.limit > 0 else 1.0

    @property
    def near(self) -> bool:
        return self.fraction >= NEAR

    @property
    def money(self) -> bool:
        return self.what.startswith("budget")


@dataclass(frozen=True, slots=True)
class Plan:
    """Which windows to query, and the budgets to compare with them."""

    windows: list[Window]
    budgets: list[tuple[str, str, Budget, int]]  # scope, id, budget, index of its window


def plan(snap: Snapshot, keys: list[KeyRuntime], now: float) -> Plan:
    calendar = Calendar(snap.settings.timezone)
    windows: list[Window] = []
    budgets: list[tuple[str, str, Budget, int]] = []
    seen_groups: set[str] = set()

    def add(scope: str, ident: str, budget: Budget) -> None:
        window = calendar.current(budget.period, now)
        names = [w.name for w in windows]
        if window.name not in names:
            windows.append(window)
            names.append(window.name)
        budgets.append((scope, ident, budget, names.index(window.name)))

    for key in keys:
        if key.budget is not None:
            add("key", key.id, key.budget)
        group = key.group
        if group is not None and group.budget is not None and group.id not in seen_groups:
            seen_groups.add(group.id)
            add("group", group.id, group.budget)
    return Plan(windows, budgets)


def spend_query(p: Plan) -> Query:
    """Spend per key and group in each window of the plan (one column per window)."""
    if not p.windows:
        return ("SELECT NULL AS key_id, NULL AS \"group\" WHERE false", [])
    return queries.spend([w.start for w in p.windows])


def budget_lines(p: Plan, spends: list[dict[str, Any]]) -> list[Line]:
    lines = []
    for scope, ident, budget, i in p.budgets:
        column = "key_id" if scope == "key" else "group"
        used = sum(float(r[f"s{i}"] or 0) for r in spends if r[column] == ident)
        end = p.windows[i].end
        resets = "never (total)" if end is None else _stamp(end)
        lines.append(Line(scope, ident, f"budget ({budget.period})", budget.usd, used, resets))
    return lines


def limit_lines(keys: list[KeyRuntime], minute: list[dict[str, Any]]) -> list[Line]:
    """rpm / tpm of keys and of their groups against the last minute; concurrency as configured."""
    per_key = {r["key_id"]: r for r in minute}
    by_group: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key in keys:
        if key.group is not None and key.id in per_key:
            by_group[key.group.id][0] += float(per_key[key.id]["requests"])
            by_group[key.group.id][1] += float(per_key[key.id]["tokens"])
    lines: list[Line] = []
    groups_done: set[str] = set()
    for key in keys:
        row = per_key.get(key.id, {"requests": 0, "tokens": 0})
        lines += _limits("key", key.id, key.limits, float(row["requests"]), float(row["tokens"]))
        group = key.group
        if group is not None and group.id not in groups_done:
            groups_done.add(group.id)
            used = by_group.get(group.id, [0.0, 0.0])
            lines += _limits("group", group.id, group.limits, used[0], used[1])
    return lines


def _limits(scope: str, ident: str, limits: Any, requests: float, tokens: float) -> list[Line]:
    out = []
    if limits.rpm:
        out.append(Line(scope, ident, "rpm", limits.rpm, requests, "rolling minute"))
    if limits.tpm:
        out.append(Line(scope, ident, "tpm", limits.tpm, tokens, "rolling minute"))
    if limits.concurrency:
        out.append(Line(scope, ident, "concurrency", limits.concurrency, None, "when requests finish"))
    return out


def _stamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
