"""Which limits apply to one (key, model): compiled once per snapshot, then looked up.

Scopes, all checked together and all charged: the key, the key on this model
(`key.model_limits`), the key's group (shared by all its keys), the group on this model
(`group.model_limits`), and the key's and the group's budgets. A `model_limits` entry names a
model as clients ask for it (alias or model name, after rules rewrote it), or a glob.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from ..config.snapshot import GroupRuntime, KeyRuntime, Snapshot
from ..config.types import Limits, Period
from .pricing import key_multiplier, peak_rates

Unit = Literal["requests", "tokens"]


@dataclass(frozen=True, slots=True)
class Rate:
    key: str  # state key, e.g. "r:k:team-a@gpt-4o:tokens"
    scope: str  # for messages: "key `team-a` on model `gpt-4o`"
    unit: Unit
    limit: int  # per minute


@dataclass(frozen=True, slots=True)
class Slots:
    key: str
    scope: str
    limit: int


@dataclass(frozen=True, slots=True)
class Spend:
    kind: Literal["key", "group"]
    id: str
    period: Period
    usd: float | None  # None: counted for `usage.spend_usd`, not enforced
    prepaid: bool = False  # the key's all-time spend against its credits (billing/credits.py)

    @property
    def scope(self) -> str:
        return f"{self.kind} `{self.id}`"

    def state_key(self, window: str) -> str:
        if self.prepaid:  # its own counter: a `total` budget of the same key counts apart
            return f"p:{self.kind}:{self.id}"
        return f"s:{self.kind}:{self.id}:{window}"


NANO = 1_000_000_000  # spend is counted in integer nano-USD

# Budget reservations: the output a request may produce when it does not say (no `max_tokens`),
# and the most output one reservation counts (a huge `max_tokens` must not refuse everything).
DEFAULT_OUTPUT_ALLOWANCE = 4096
MAX_OUTPUT_ALLOWANCE = 32768


@dataclass(frozen=True, slots=True)
class Reserve:
    """What a request on this (key, model) reserves against its budgets, in nano-USD: the most
    expensive rates of the route's targets (base and tiered prices), times the key's and
    group's price multipliers. Zero when no target has a price (nothing to reserve)."""

    per_prompt_token: float = 0.0
    per_output_token: float = 0.0
    per_request: float = 0.0

    def nanos(self, prompt_tokens: int, max_output_tokens: int) -> int:
        """The reservation for a prompt of ~`prompt_tokens` and the client's output cap (0: none)."""
        output = min(max_output_tokens or DEFAULT_OUTPUT_ALLOWANCE, MAX_OUTPUT_ALLOWANCE)
        cost = prompt_tokens * self.per_prompt_token + output * self.per_output_token + self.per_request
        return math.ceil(cost) if cost > 0 else 0


NO_RESERVE = Reserve()


class Plan:
    """The checks of one (key, model), with the tuples the hot path needs computed once."""

    __slots__ = ("budget_nanos", "credit_args", "header_groups", "limit_strs", "meter", "rate_args",
                 "rates", "reserve", "slot_args", "slot_keys", "slots", "spends", "token_rates")

    def __init__(self, rates: tuple[Rate, ...] = (), slots: tuple[Slots, ...] = (),
                 spends: tuple[Spend, ...] = (), meter: str | None = None,
                 reserve: Reserve = NO_RESERVE) -> None:
        self.rates, self.slots, self.meter, self.reserve = rates, slots, meter, reserve
        self.spends = spends  # budgets and tracked spend; the usage view reads spends[0]
        self.rate_args = tuple((r.key, r.limit, r.unit == "tokens") for r in rates)
        self.token_rates = tuple((r.key, r.limit) for r in rates if r.unit == "tokens")
        self.limit_strs = tuple(str(r.limit) for r in rates)
        self.header_groups = tuple(
            (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}", f"x-ratelimit-reset-{unit}",
             tuple(i for i, r in enumerate(rates) if r.unit == unit))
            for unit in ("requests", "tokens") if any(r.unit == unit for r in rates)
        )
        self.slot_args = tuple((s.key, s.limit) for s in slots)
        self.slot_keys = tuple(s.key for s in slots)
        self.budget_nanos = tuple(-1 if s.usd is None else round(s.usd * NANO) for s in spends)
        # prepaid: (spend index, credits state key); its budget_nanos is the overdraft allowed,
        # to which the store adds the key's credits (billing/credits.py)
        self.credit_args = tuple((i, credits_key(s.id)) for i, s in enumerate(spends) if s.prepaid)

    def __repr__(self) -> str:
        return (f"Plan(rates={self.rates!r}, slots={self.slots!r}, spends={self.spends!r}, "
                f"meter={self.meter!r}, reserve={self.reserve!r})")


def credits_key(key_id: str) -> str:
    """The state key of a prepaid key's credits (a total and the ledger entry it counts up to)."""
    return f"cr:key:{key_id}"


EMPTY = Plan()


@dataclass(frozen=True, slots=True)
class Reads:
    """What the bundle's rules read of `usage`."""

    spend: bool = False
    rate: bool = False

    @property
    def any(self) -> bool:
        return self.spend or self.rate


def rule_reads(snap: Snapshot) -> Reads:
    fields = {name for root, name in snap.rules.refs if root == "usage"}
    if None in fields:
        return Reads(True, True)
    return Reads(bool(fields & {"spend_usd", "budget_usd", "budget_fraction"}), bool(fields & {"rpm", "tpm"}))


def model_limits(table: dict[str, Limits], model: str) -> Limits | None:
    exact = table.get(model)
    if exact is not None:
        return exact
    return next((lim for pat, lim in table.items() if fnmatch.fnmatchcase(model, pat)), None)


def _scope_limits(kind: str, ident: str, model: str, limits: Limits | None, on_model: bool,
                  rates: list[Rate], slots: list[Slots]) -> None:
    if limits is None:
        return
    tag = f"{kind[0]}:{ident}@{model}" if on_model else f"{kind[0]}:{ident}"
    scope = f"{kind} `{ident}`" + (f" on model `{model}`" if on_model else "")
    if limits.rpm:
        rates.append(Rate(f"r:{tag}:requests", scope, "requests", limits.rpm))
    if limits.tpm:
        rates.append(Rate(f"r:{tag}:tokens", scope, "tokens", limits.tpm))
    if limits.concurrency:
        slots.append(Slots(f"c:{tag}", scope, limits.concurrency))


def build_plan(snap: Snapshot, key: KeyRuntime, model: str, reads: Reads) -> Plan:
    rates: list[Rate] = []
    slots: list[Slots] = []
    spends: list[Spend] = []
    _scope_limits("key", key.id, model, key.limits, False, rates, slots)
    _scope_limits("key", key.id, model, model_limits(key.model_limits, model), True, rates, slots)
    group = key.group
    if group is not None:
        _scope_limits("group", group.id, model, group.limits, False, rates, slots)
        _scope_limits("group", group.id, model, model_limits(group.model_limits, model), True, rates, slots)
    if key.budget is not None:
        spends.append(Spend("key", key.id, key.budget.period, key.budget.usd))
    if group is not None and group.budget is not None:
        spends.append(Spend("group", group.id, group.budget.period, group.budget.usd))
    if reads.spend and not spends:
        spends.append(Spend("key", key.id, "month", None))
    if key.prepaid is not None:  # last: the `usage` view reads spends[0]
        spends.append(Spend("key", key.id, "total", key.prepaid.credit_limit, prepaid=True))
    meter = f"m:{key.id}" if reads.rate else None
    if not (rates or slots or spends or meter):
        return EMPTY
    enforced = any(s.usd is not None for s in spends)
    reserve = reserve_rates(snap, key, model) if enforced else NO_RESERVE
    return Plan(tuple(rates), tuple(slots), tuple(spends), meter, reserve)


def reserve_rates(snap: Snapshot, key: KeyRuntime, model: str) -> Reserve:
    """The most a token of this route's prompt / output may cost: the highest rate among its
    targets (every priority tier; not its fallbacks) and their price tiers, so whichever target
    serves the request, its rates are not above the reserved ones. Unpriced targets count 0."""
    route = snap.routes.get(model)
    if route is None:
        return NO_RESERVE
    prompt = output = fixed = Decimal(0)
    for tier in route.tiers:
        for target in tier:
            price = snap.price_for(target.provider, target.model)
            if price is None:
                continue
            p, o, f = peak_rates(price)
            prompt, output, fixed = max(prompt, p), max(output, o), max(fixed, f)
    if not (prompt or output or fixed):
        return NO_RESERVE
    group = key.group.price_multiplier if key.group else None
    nano = key_multiplier(key.price_multiplier, group) * NANO  # USD -> nano-USD
    return Reserve(float(prompt * nano / 1_000_000), float(output * nano / 1_000_000), float(fixed * nano))


def declares_limits(snap: Snapshot) -> bool:
    """Does the bundle need shared state (any limit, any budget, or rules reading `usage`)?"""

    def has(limits: Limits) -> bool:
        return bool(limits.rpm or limits.tpm or limits.concurrency)

    holders: list[GroupRuntime | KeyRuntime] = [*snap.groups.values(), *snap.keys_by_id.values()]
    return rule_reads(snap).any or any(
        h.budget is not None or has(h.limits) or any(has(m) for m in h.model_limits.values()) for h in holders
    ) or any(k.prepaid is not None for k in snap.keys_by_id.values())


def lease_ms(snap: Snapshot) -> int:
    """How long a concurrency slot outlives a worker that died holding it: the longest a request
    may take (slowest provider's total timeout times the attempts allowed), plus a minute."""
    longest = max((p.timeouts.total for p in snap.providers.values()), default=600.0)
    return int((longest * snap.settings.routing.max_attempts + 60) * 1000)
