"""Semantic differences between two compiled snapshots: providers, models and aliases, routes,
prices, settings, keys, limits and groups. Secrets are never compared by value in the output:
a provider's API keys and header values are reported as changed, not shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from ..config.snapshot import GroupRuntime, KeyRuntime, PriceRuntime, ProviderRuntime, Route, Snapshot
from ..config.types import Budget, Limits, Price
from .report import Change

T = TypeVar("T")
_ADDED_FIELDS = ("kind", "base_url", "models", "input", "output", "price_multiplier")  # what "added" lists
_RATES = ("input", "output", "cached_input", "cache_write", "reasoning",
          "per_request", "per_image", "per_audio_second")


def bundle_changes(old: Snapshot, new: Snapshot, now: datetime | None = None) -> list[Change]:
    now = now or datetime.now(UTC)
    return [
        *_keyed("providers", old.providers, new.providers, _provider_fields),
        *_models(old, new),
        *_routes(old, new),
        *_keyed("prices", old.prices, new.prices, _price_fields),
        *_settings(old, new),
        *_keys(old, new, now),
        *_limits(old, new),
        *_keyed("groups", old.groups, new.groups, _group_fields),
    ]


def _keyed(
    section: str, old: Mapping[str, T], new: Mapping[str, T], fields: Callable[[T], dict[str, Any]]
) -> list[Change]:
    """Added, removed and changed entries of one table, the changed ones field by field."""
    out = [_added(section, name, fields(new[name])) for name in sorted(new.keys() - old)]
    out += [Change(section, name, "removed") for name in sorted(old.keys() - new)]
    for name in sorted(old.keys() & new):
        moved = field_changes(fields(old[name]), fields(new[name]))
        if moved:
            out.append(Change(section, name, "changed", tuple(_arrow(f, a, b) for f, a, b in moved),
                              {"fields": {f: {"old": a, "new": b} for f, a, b in moved}}))
    return out


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(f, old.get(f), new.get(f)) for f in sorted({*old, *new}) if old.get(f) != new.get(f)]


def _arrow(name: str, old: Any, new: Any) -> str:
    return f"{name}: {_show(old)} -> {_show(new)}"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _added(section: str, name: str, fields: Mapping[str, Any]) -> Change:
    """An added entry with its main fields (all of them for a price or a group): the rest are
    defaults, and listing them would make the report change whenever a field is added to the
    format."""
    shown = [k for k in _ADDED_FIELDS if k in fields] or list(fields)
    kept = {k: fields[k] for k in shown if fields[k] not in (None, [], {}, "")}
    details = tuple(f"{k}: {_show(v)}" for k, v in kept.items())
    return Change(section, name, "added", details, {"fields": kept})


def _provider_fields(p: ProviderRuntime) -> dict[str, Any]:
    spec = msgspec.to_builtins(p.spec)
    skip = {"id", "api_keys", "headers", "models", "base_url", "priority", "weight", "model_map", "kind"}
    return {
        "kind": p.kind, "base_url": p.base_url, "models": sorted(p.models), "priority": p.priority,
        "weight": p.weight, "model_map": dict(sorted(p.model_map.items())),
        # values are credentials or may carry them: compared, never shown
        "api_keys": f"{len(p.api_keys)} key(s) #{_fingerprint(p.api_keys)}",
        "headers": f"{', '.join(n for n, _ in p.headers) or 'none'} #{_fingerprint(p.headers)}",
        **{k: v for k, v in spec.items() if k not in skip},
    }


def _fingerprint(values: Iterable[Any]) -> str:
    import hashlib

    return hashlib.sha256(repr(tuple(values)).encode()).hexdigest()[:6]


def _models(old: Snapshot, new: Snapshot) -> list[Change]:
    out = []
    for name in sorted(new.routes.keys() - old.routes):
        kind = "alias" if new.routes[name].is_alias else "model"
        out.append(Change("models", name, "added", (f"{kind}: {describe_route(new.routes[name])}",),
                          {"alias": new.routes[name].is_alias}))
    for name in sorted(old.routes.keys() - new.routes):
        out.append(Change("models", name, "removed", (), {"alias": old.routes[name].is_alias}))
    return out


def describe_route(route: Route) -> str:
    tiers = [" | ".join(f"{t.provider}/{t.model} w={t.weight}" for t in tier) for tier in route.tiers]
    text = " ; then ".join(tiers)
    if route.fallbacks:
        text += f" ; fallbacks {', '.join(route.fallbacks)}"
    return text


def route_fields(route: Route) -> dict[str, Any]:
    return {
        "tiers": [[f"{t.provider}/{t.model} w={t.weight}" for t in tier] for tier in route.tiers],
        "strategy": route.strategy,
        "fallbacks": list(route.fallbacks),
        "kind": "alias" if route.is_alias else "model",
    }


def _routes(old: Snapshot, new: Snapshot) -> list[Change]:
    out = []
    for name in sorted(old.routes.keys() & new.routes):
        moved = field_changes(route_fields(old.routes[name]), route_fields(new.routes[name]))
        if moved:
            out.append(Change("routes", name, "changed", tuple(_arrow(f, a, b) for f, a, b in moved),
                              {"fields": {f: {"old": a, "new": b} for f, a, b in moved}}))
    return out


def _price_fields(p: PriceRuntime) -> dict[str, Any]:
    return price_rates(p.rates)


def price_rates(rates: Price) -> dict[str, Any]:
    """The rates as written; a rate left to its default (cached_input = input...) is absent."""
    out: dict[str, Any] = {name: getattr(rates, name) for name in _RATES}
    for action, value in sorted(rates.per_action.items()):
        out[f"per_action.{action}"] = value
    out["tiers"] = [msgspec.to_builtins(t) for t in rates.tiers]
    return {k: v for k, v in out.items() if v not in (0.0, [], None)}


def _settings(old: Snapshot, new: Snapshot) -> list[Change]:
    moved = field_changes(_flat(msgspec.to_builtins(old.settings)), _flat(msgspec.to_builtins(new.settings)))
    return [Change("settings", f, "changed", (_arrow(f, a, b),), {"old": a, "new": b}) for f, a, b in moved]


def _flat(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _keys(old: Snapshot, new: Snapshot, now: datetime) -> list[Change]:
    a, b = old.keys_by_id, new.keys_by_id
    out = [Change("keys", k, "added", _key_state(b[k], now)) for k in sorted(b.keys() - a)]
    out += [Change("keys", k, "removed") for k in sorted(a.keys() - b)]
    for k in sorted(a.keys() & b):
        was, now_key = a[k], b[k]
        if was.disabled != now_key.disabled:
            out.append(Change("keys", k, "disabled" if now_key.disabled else "enabled"))
        if was.expires != now_key.expires:
            new_exp = now_key.expires
            expired = new_exp is not None and new_exp <= now
            kind = "expired" if expired else "expiring" if new_exp else "changed"
            out.append(Change("keys", k, kind, (_arrow("expires", _iso(was.expires), _iso(new_exp)),),
                              {"old": _iso(was.expires), "new": _iso(new_exp)}))
        moved = field_changes(_key_fields(was), _key_fields(now_key))
        if moved:
            out.append(Change("keys", k, "changed", tuple(_arrow(f, x, y) for f, x, y in moved),
                              {"fields": {f: {"old": x, "new": y} for f, x, y in moved}}))
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _key_state(key: KeyRuntime, now: datetime) -> tuple[str, ...]:
    out = [f"group: {key.group.id if key.group else 'none'}"]
    if key.disabled:
        out.append("disabled")
    if key.expires:
        gone = " (already expired)" if key.expires <= now else ""
        out.append(f"expires: {key.expires.isoformat()}{gone}")
    return tuple(out)


def _key_fields(key: KeyRuntime) -> dict[str, Any]:
    return {"group": key.group.id if key.group else None, "models": list(key.models.patterns),
            "ip_allow": [str(n) for n in key.networks], "tags": list(key.tags),
            "price_multiplier": key.price_multiplier}


def limits_fields(
    limits: Limits, model_limits: Mapping[str, Limits], budget: Budget | None
) -> dict[str, Any]:
    out: dict[str, Any] = {f"limits.{k}": v for k, v in msgspec.to_builtins(limits).items()}
    for model, lim in sorted(model_limits.items()):
        out.update({f"model_limits.{model}.{k}": v for k, v in msgspec.to_builtins(lim).items()})
    if budget is not None:
        out["budget"] = f"${budget.usd} per {budget.period}"
    return out


def _limits(old: Snapshot, new: Snapshot) -> list[Change]:
    out = []
    for k in sorted(old.keys_by_id.keys() & new.keys_by_id):
        a, b = old.keys_by_id[k], new.keys_by_id[k]
        moved = field_changes(limits_fields(a.limits, a.model_limits, a.budget),
                              limits_fields(b.limits, b.model_limits, b.budget))
        if moved:
            out.append(Change("limits", k, "changed", tuple(_arrow(f, x, y) for f, x, y in moved),
                              {"fields": {f: {"old": x, "new": y} for f, x, y in moved}}))
    return out


def _group_fields(g: GroupRuntime) -> dict[str, Any]:
    return {"price_multiplier": g.price_multiplier, "models": list(g.models.patterns),
            **limits_fields(g.limits, g.model_limits, g.budget)}
