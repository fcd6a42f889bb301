"""The key x model grid: which models each key can reach, and which cells each rule matches.

A key reaches a model when it exists, is enabled and not expired, its allow-list (or its
group's) matches the model, the model has a route, and no rule that reads only `key.*` and
`request.model` denies it. Globs are expanded against the real model set (the routes of both
sides). A rule reading anything else (the request's other fields, usage, the time) cannot be
placed on the grid: it is reported as "depends on request".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config.snapshot import KeyRuntime, Snapshot
from ..policy.cel import CelEvalError
from ..policy.rules import CompiledRule
from .report import Change

_KEY_FIELDS = frozenset({("key", "id"), ("key", "group"), ("key", "tags"), ("key", None)})
_MODEL = ("request", "model")


def is_static(rule: CompiledRule) -> bool:
    return all(ref in _KEY_FIELDS or ref == _MODEL for ref in rule.expr.refs)


def _key_view(key: KeyRuntime) -> dict[str, Any]:
    return {"id": key.id, "group": key.group.id if key.group else "", "tags": list(key.tags)}


@dataclass
class Grid:
    """Evaluates static rules over keys x models, once per distinct combination of the values a
    rule reads (a rule on `key.group` runs once per group and model, not once per key)."""

    keys: list[KeyRuntime]
    models: list[str]

    def matches(self, rule: CompiledRule) -> set[tuple[str, str]]:
        reads_model = _MODEL in rule.expr.refs
        key_refs = [r for r in rule.expr.refs if r != _MODEL]
        by_values: dict[tuple[Any, ...], list[KeyRuntime]] = defaultdict(list)
        for key in self.keys:
            view = _key_view(key)
            by_values[tuple(_frozen(view if n is None else view[n]) for _, n in key_refs)].append(key)
        cells: set[tuple[str, str]] = set()
        for keys in by_values.values():
            view = _key_view(keys[0])
            for model in self.models if reads_model else [""]:
                if _holds(rule, view, model):
                    hit = self.models if not reads_model else [model]
                    cells.update((k.id, m) for k in keys for m in hit)
        return cells


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else tuple(sorted(value.items())) if isinstance(
        value, dict) else value


def _holds(rule: CompiledRule, view: dict[str, Any], model: str) -> bool:
    def lookup(root: str, name: str | None) -> Any:
        if root == "request":
            return model
        return {k: v for k, v in view.items()} if name is None else view[name]

    try:
        return rule.expr.run(tuple(lookup(r, n) for r, n in rule.expr.refs)) is True
    except CelEvalError:
        return True  # the gateway refuses a request whose rule fails: count it as matching


def model_universe(old: Snapshot, new: Snapshot) -> list[str]:
    return sorted(old.routes.keys() | new.routes.keys())


def static_decisions(snap: Snapshot, models: list[str]) -> dict[tuple[str, str], CompiledRule]:
    """For each (key, model) cell, the first decisive static rule that matches it, unless a
    decisive rule that depends on the request comes first (then nothing is certain)."""
    grid = Grid(list(snap.keys_by_id.values()), models)
    decided: dict[tuple[str, str], CompiledRule] = {}
    for rule in snap.rules.rules:
        if not rule.decisive:
            continue
        if not is_static(rule):
            break
        for cell in grid.matches(rule):
            decided.setdefault(cell, rule)
    return decided


def reachable(snap: Snapshot, models: Iterable[str], now: datetime,
              decided: dict[tuple[str, str], CompiledRule]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key in snap.keys_by_id.values():
        if key.disabled or (key.expires is not None and key.expires <= now):
            out[key.id] = set()
            continue
        out[key.id] = {m for m in models if _reaches(snap, key, m, decided)}
    return out


def _reaches(snap: Snapshot, key: KeyRuntime, model: str,
             decided: dict[tuple[str, str], CompiledRule]) -> bool:
    if model not in snap.routes or not key.allows_model(model):
        return False
    rule = decided.get((key.id, model))
    return rule is None or rule.deny is None


def access_changes(old: Snapshot, new: Snapshot, now: datetime | None = None) -> list[Change]:
    now = now or datetime.now(UTC)
    models = model_universe(old, new)
    before = reachable(old, models, now, static_decisions(old, models))
    after = reachable(new, models, now, static_decisions(new, models))
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key, set()), after.get(key, set())
        gained, lost = sorted(b - a), sorted(a - b)
        if gained or lost:
            details = ([f"gains: {', '.join(gained)}"] if gained else []) + (
                [f"loses: {', '.join(lost)}"] if lost else [])
            out.append(Change("access", key, "changed", tuple(details), {"gained": gained, "lost": lost}))
    return out


def rule_changes(old: Snapshot, new: Snapshot) -> list[Change]:
    models = model_universe(old, new)
    a = {r.id: (i, r) for i, r in enumerate(old.rules.rules)}
    b = {r.id: (i, r) for i, r in enumerate(new.rules.rules)}
    out = []
    for rid in sorted(b.keys() - a.keys()):
        out.append(_rule_change("added", b[rid][1], new, models, None))
    for rid in sorted(a.keys() - b.keys()):
        out.append(_rule_change("removed", a[rid][1], old, models, None))
    for rid in sorted(a.keys() & b.keys()):
        (i, ra), (j, rb) = a[rid], b[rid]
        if _rule_fields(ra) != _rule_fields(rb):
            out.append(_rule_change("changed", rb, new, models, (ra, old)))
        elif _order(old, ra) != _order(new, rb):
            out.append(Change("rules", rid, "moved", (f"position {i + 1} -> {j + 1}",),
                              {"old_position": i + 1, "new_position": j + 1}))
    return out


def _order(snap: Snapshot, rule: CompiledRule) -> list[str]:
    """The rules before this one: moving a decisive rule past another changes the decision."""
    ids = [r.id for r in snap.rules.rules]
    return ids[: ids.index(rule.id)]


def _rule_fields(rule: CompiledRule) -> dict[str, Any]:
    return {"when": rule.expr.source, "deny": rule.deny, "route": rule.route, "set_model": rule.set_model,
            "set_headers": dict(rule.set_headers), "add_tags": list(rule.add_tags)}


def _action(rule: CompiledRule) -> str:
    fields = _rule_fields(rule)
    return ", ".join(f"{k}={v!r}" for k, v in fields.items() if k != "when" and v not in (None, {}, []))


def _rule_change(kind: str, rule: CompiledRule, snap: Snapshot, models: list[str],
                 before: tuple[CompiledRule, Snapshot] | None) -> Change:
    details = [f"when: {rule.expr.source}", f"then: {_action(rule)}"] if before is None else []
    data: dict[str, Any] = {"when": rule.expr.source, "action": _action(rule)}
    if before is not None:
        old_rule = before[0]
        for f, (x, y) in {k: (v, _rule_fields(rule)[k]) for k, v in _rule_fields(old_rule).items()}.items():
            if x != y:
                details.append(f"{f}: {x!r} -> {y!r}")
    static = is_static(rule) and (before is None or is_static(before[0]))
    if not static:
        reads = sorted({f"{r}.{n}" if n else r for r, n in rule.expr.refs} - {"request.model"}
                       - {f"key.{n}" for _, n in _KEY_FIELDS if n})
        details.append(f"depends on request (reads {', '.join(reads)})")
        data["depends_on_request"] = reads
        return Change("rules", rule.id, kind, tuple(details), data)
    cells = Grid(list(snap.keys_by_id.values()), models).matches(rule)
    if before is not None:
        old_rule, old_snap = before
        old_cells = Grid(list(old_snap.keys_by_id.values()), models).matches(old_rule)
        cells = cells ^ old_cells  # the cells whose outcome the change moves
    keys = sorted({k for k, _ in cells})
    hit_models = sorted({m for _, m in cells})
    details.append(f"affects {len(keys)} key(s): {_few(keys)}; "
                   f"{len(hit_models)} model(s): {_few(hit_models)}")
    data.update({"keys": keys, "models": hit_models, "cells": len(cells)})
    return Change("rules", rule.id, kind, tuple(details), data)


def _few(items: list[str], n: int = 8) -> str:
    if not items:
        return "none"
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
