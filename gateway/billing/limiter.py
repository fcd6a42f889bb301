"""The enforcing limiter: rpm / tpm / concurrency per key, group and (key or group, model), and
USD budgets per calendar period, over a `StateStore` (memory or Redis).

Per request: `admit` looks up the compiled plan for (key, model), reserves everything in one
store operation (one Redis round trip): rate-bucket units, a concurrency slot, and the
estimated cost on each budget; it returns OpenAI's x-ratelimit-* headers. `settle` replaces the
token estimate with the real usage, frees the concurrency slot, and replaces the cost
reservation with the real cost. A request whose key has no limit costs a dict lookup and no
store call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Protocol

from ..config.periods import Calendar, Window
from ..config.snapshot import KeyRuntime, Snapshot
from ..errors import LimitsUnavailable
from ..policy.context import UsageView
from .answers import rate_headers, refusal
from .credits import BALANCE_HEADER, CreditBook, CreditSource, balance_text, credit_refusal
from .limits import Admission, Settled
from .plan import EMPTY, NANO, NO_RESERVE, Plan, Reads, Spend, build_plan, lease_ms, rule_reads
from .store import Ask, Grant, MemoryStore, Settle, StateStore, StateUnavailable

log = logging.getLogger("tollgate.limits")
KEEP_PAST_PERIODS_S = 35 * 86400  # a finished period's counter stays readable this long


class SpendSource(Protocol):
    """The usage ledger's view of past spend, used to seed budget counters."""

    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal: ...


@dataclass(slots=True)
class Ticket:
    plan: Plan
    lease: str
    reserved: int
    spend_keys: list[tuple[str, int]]  # state key, expire-at
    held: list[str]  # spend keys holding a cost reservation under `lease`
    credits: int = 0  # prepaid: the key's credits (nano-USD) when admitted (`charge` compares)

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, plan: Plan, lease: str, reserved: int, spend_keys: list[tuple[str, int]],
                 held: list[str], credits: int = 0) -> None:
        self.plan = plan
        self.lease = lease
        self.reserved = reserved
        self.spend_keys = spend_keys
        self.held = held
        self.credits = credits


def to_nano(usd: Decimal | None) -> int:
    if not usd:
        return 0
    return int((usd * NANO).to_integral_value(ROUND_HALF_UP))


def most_used(spends: tuple[Spend, ...], spent: list[int]) -> tuple[float, float, str, str] | None:
    """The enforced, postpaid budget closest to its limit: (spend, limit, period, scope)."""
    best: tuple[float, Spend, int] | None = None
    for spend, nano in zip(spends, spent, strict=False):
        if spend.usd and not spend.prepaid:
            fraction = nano / (spend.usd * NANO)
            if best is None or fraction > best[0]:
                best = (fraction, spend, nano)
    if best is None:
        return None
    _, spend, nano = best
    return nano / NANO, float(spend.usd or 0.0), spend.period, spend.scope


class EnforcingLimiter:
    def __init__(self, store: StateStore, spend_source: SpendSource | None = None,
                 fail_open: bool = False, credit_source: CreditSource | None = None) -> None:
        self.store = store
        # the memory store answers at once: called without a coroutine (exactly this class: a
        # subclass may wait or fail on purpose)
        self._memory = store if type(store) is MemoryStore else None
        self.spend_source = spend_source
        self.credits = CreditBook(store, credit_source)  # prepaid keys (billing/credits.py)
        self.fail_open = fail_open
        self._snap: Snapshot | None = None
        self._reads = Reads()
        self._lease_ms = 0
        self._calendar = Calendar("UTC")
        self._plans: dict[tuple[str, str], Plan] = {}
        self._seeded: set[str] = set()
        self._seeding: dict[str, asyncio.Event] = {}  # one ledger query per counter, however many ask
        self._spend_keys: dict[Plan, tuple[list[Window], list[tuple[str, int]], list[tuple[str, int]]]] = {}
        self._lease_ids = itertools.count()
        self._lease_prefix = f"{os.getpid()}-{secrets.token_hex(3)}-"
        self._last_outage_log = 0.0

    def _sync(self, snap: Snapshot) -> None:
        """A new snapshot (hot reload) recompiles plans lazily; state keys are unchanged."""
        if snap is self._snap:
            return
        self._snap, self._reads, self._lease_ms = snap, rule_reads(snap), lease_ms(snap)
        self._plans = {}
        self._spend_keys = {}
        if str(self._calendar.zone) != snap.settings.timezone:
            self._calendar = Calendar(snap.settings.timezone)

    def _plan(self, snap: Snapshot, key: KeyRuntime, model: str) -> Plan:
        if snap is not self._snap:
            self._sync(snap)
        plan = self._plans.get((key.id, model))
        if plan is None:
            if len(self._plans) > 65536:
                self._plans.clear()
                self._spend_keys.clear()
            plan = self._plans[(key.id, model)] = build_plan(snap, key, model, self._reads)
        return plan

    def _windows(self, spends: tuple[Spend, ...]) -> list[Window]:
        return [self._calendar.current(s.period) for s in spends]

    async def admit(self, snapshot: Snapshot, key: KeyRuntime, model: str, estimate_tokens: int,
                    max_output_tokens: int = 0, reserve_usd: Decimal | None = None) -> Admission:
        """`estimate_tokens` is the prompt estimate plus `max_output_tokens`, the client's output
        cap (0 when it set none: budgets then reserve `DEFAULT_OUTPUT_ALLOWANCE`). `reserve_usd`:
        the request's cost is known before it runs (an asynchronous task's charge): reserve it."""
        plan = self._plan(snapshot, key, model)
        if plan is EMPTY:
            return Admission()
        windows: list[Window] = []
        spend_keys: list[tuple[str, int]] = []
        budgets: list[tuple[str, int]] = []
        fresh = False  # spend keys computed anew: seed them, then cache them
        if plan.spends:
            windows = self._windows(plan.spends)
            cached = self._spend_keys.get(plan)
            if cached is not None and all(a is b for a, b in zip(cached[0], windows, strict=True)):
                spend_keys, budgets = cached[1], cached[2]
            else:
                fresh = True
                for spend, window, nano in zip(plan.spends, windows, plan.budget_nanos, strict=True):
                    state_key = spend.state_key(window.name)
                    spend_keys.append((state_key, _expire_at(window)))
                    budgets.append((state_key, nano))
        reserve = 0
        held: list[str] = []
        if budgets and reserve_usd is not None:
            reserve = to_nano(reserve_usd)
            held = [k for k, limit in budgets if limit >= 0] if reserve else []
        elif budgets and plan.reserve is not NO_RESERVE:
            reserve = plan.reserve.nanos(max(estimate_tokens - max_output_tokens, 0), max_output_tokens)
            held = [k for k, limit in budgets if limit >= 0] if reserve else []
        ask = Ask(
            [(k, limit, estimate_tokens if tokens else 1) for k, limit, tokens in plan.rate_args]
            if plan.rate_args else (),
            plan.slot_args,
            [(k, limit, reserve) for k, limit in budgets] if budgets else (),
            plan.meter,
            f"{self._lease_prefix}{next(self._lease_ids)}",
            self._lease_ms,
            plan.credit_args,
        )
        try:
            if fresh:
                await self._seed(plan.spends, windows)
                self._spend_keys[plan] = (windows, spend_keys, budgets)  # reused until a period ends
            if plan.credit_args:
                await self.credits.ensure(key.id)
            memory = self._memory
            grant = memory.acquire_now(ask) if memory is not None else await self.store.acquire(ask)
            if not grant.ok and self._stale_credits(plan, grant, key.id):
                await self.credits.refresh(key.id)  # topped up meanwhile? (CLI, another machine)
                grant = await self.store.acquire(ask)
        except StateUnavailable as exc:
            return self._outage(exc)
        if not grant.ok:
            if grant.failed_kind == "budget" and plan.spends[grant.failed_index].prepaid:
                raise credit_refusal(plan.spends[grant.failed_index], grant.spend[-1], grant.credits[0],
                                     grant.held, reserve)
            raise refusal(plan, grant, windows, estimate_tokens, reserve)
        ticket = Ticket(plan, ask.lease, estimate_tokens, spend_keys, held)
        if plan.credit_args:
            ticket.credits = grant.credits[0]
        headers = rate_headers(plan, grant) if plan.header_groups else []
        if plan.credit_args:  # the balance before this request: credits - spend
            balance = grant.credits[0] - grant.spend[plan.credit_args[0][0]]
            headers.append((BALANCE_HEADER, balance_text(balance)))
        admission = Admission(headers, estimate_tokens, ticket)
        if budgets:  # for budget_threshold alerts (server/account_events.py)
            admission.budget_fn = partial(most_used, plan.spends, grant.spend)
        return admission

    def _stale_credits(self, plan: Plan, grant: Grant, key_id: str) -> bool:
        return (grant.failed_kind == "budget" and plan.spends[grant.failed_index].prepaid
                and self.credits.may_retry(key_id))

    def settle_now(self, admission: Admission, record: Settled) -> bool:
        """`settle` without a coroutine when the store answers at once (memory); False: the
        caller awaits `settle` instead."""
        if self._memory is None:
            return False
        settle = _settle_of(admission, record)
        if settle is not None:
            try:
                self._memory.release_now(settle)
            except Exception:
                log.exception("settling limits failed")
        return True

    async def settle(self, admission: Admission, record: Settled) -> None:
        if self.settle_now(admission, record):
            return
        settle = _settle_of(admission, record)
        if settle is None:
            return
        try:
            await self.store.release(settle)
        except StateUnavailable as exc:
            self._log_outage(exc, "usage of a finished request was not counted")
        except Exception:
            log.exception("settling limits failed")

    async def charge(self, admission: Admission, record: Settled) -> bool:
        """One part of a long admission's usage (a response of a Realtime API session): its
        tokens go to the tpm buckets and the meter and its cost to the budgets, while the slot
        and the reservation stay held until `settle`. False when a budget it is charged to is
        now spent (the session should end)."""
        ticket = admission.token
        if not isinstance(ticket, Ticket):
            return True
        plan = ticket.plan
        actual = record.prompt_tokens + record.completion_tokens
        nano = to_nano(record.cost_usd)
        charge = Settle(
            [(k, limit, actual) for k, limit in plan.token_rates] if actual else (),
            (),
            [(k, nano, at) for k, at in ticket.spend_keys] if nano else (),
            plan.meter,
            actual,
            ticket.lease,
            (),
        )
        try:
            if charge.tokens or charge.spend or (charge.meter and actual):
                await self.store.release(charge)
            if not ticket.spend_keys:
                return True
            spent, _, _ = await self.store.read([k for k, _ in ticket.spend_keys], None)
        except StateUnavailable as exc:
            self._log_outage(exc, "usage of a realtime response was not counted")
            return True
        limits = list(plan.budget_nanos)
        for i, _ in plan.credit_args:  # prepaid: the overdraft plus the credits seen at admission
            limits[i] += ticket.credits
        return all(limit < 0 or value < limit for value, limit in zip(spent, limits, strict=True))

    async def refund(self, snapshot: Snapshot, key: KeyRuntime, model: str, usd: Decimal) -> None:
        """Give a charge back (a failed asynchronous task's): the spend counters of the key's
        budgets in the current period go down by `usd` (the refund row in the ledger agrees)."""
        plan = self._plan(snapshot, key, model)
        nano = to_nano(usd)
        if not plan.spends or nano <= 0:
            return
        windows = self._windows(plan.spends)
        spends = zip(plan.spends, windows, strict=True)
        spend = [(s.state_key(w.name), -nano, _expire_at(w)) for s, w in spends]
        try:
            await self._seed(plan.spends, windows)
            await self.store.release(Settle(spend=spend))
        except StateUnavailable as exc:
            self._log_outage(exc, "a refund was not given back to the budgets")

    async def usage(self, snapshot: Snapshot, key: KeyRuntime) -> UsageView | None:
        """What rules see as `usage`; None when no rule reads it (no store call)."""
        self._sync(snapshot)
        if not self._reads.any:
            return None
        plan = self._plan(snapshot, key, "")
        spends = plan.spends[:1]
        windows = self._windows(spends)
        try:
            await self._seed(spends, windows)
            values, rpm, tpm = await self.store.read(
                [s.state_key(w.name) for s, w in zip(spends, windows, strict=True)], plan.meter
            )
        except StateUnavailable as exc:
            self._outage(exc)
            return UsageView()
        spend = values[0] / NANO if values else 0.0
        budget = spends[0].usd if spends and spends[0].usd is not None else None
        fraction = 0.0 if budget is None else (spend / budget if budget > 0 else 1.0)
        return UsageView(spend, budget or 0.0, fraction, rpm, tpm)

    async def _seed(self, spends: tuple[Spend, ...], windows: list[Window]) -> None:
        """First use of a spend counter in this process: start it from the ledger's total for the
        period, unless the store already has it (Redis keeps it across restarts). A budget is not
        enforced from a guess: while the ledger cannot answer, this raises `StateUnavailable`
        (fail closed), or counts from zero with `redis_failure = open`. Concurrent first requests
        wait for one query (a burst at start-up would otherwise queue one query per request)."""
        for spend, window in zip(spends, windows, strict=True):
            state_key = spend.state_key(window.name)
            while state_key not in self._seeded:
                pending = self._seeding.get(state_key)
                if pending is not None:
                    await pending.wait()  # seeded, or failed: then this request tries itself
                    continue
                done = self._seeding[state_key] = asyncio.Event()
                try:
                    await self._seed_one(spend, window, state_key)
                finally:
                    del self._seeding[state_key]
                    done.set()

    async def _seed_one(self, spend: Spend, window: Window, state_key: str) -> None:
        if self.spend_source is not None:
            try:
                usd = await self.spend_source.spend_since(spend.kind, spend.id, window.start)
            except Exception as exc:
                if not self.fail_open:
                    raise StateUnavailable(f"usage ledger: {type(exc).__name__}: {exc}") from None
                log.error("cannot read past spend of %s from the usage ledger (%s); counting from "
                          "zero (redis_failure = open)", spend.scope, exc)
                usd = Decimal(0)
            await self.store.seed(state_key, to_nano(usd), _expire_at(window))
        if len(self._seeded) > 100_000:
            self._seeded.clear()
        self._seeded.add(state_key)

    def _outage(self, exc: StateUnavailable) -> Admission:
        if self.fail_open:
            self._log_outage(exc, "admitting requests without limits (redis_failure = open)")
            return Admission()
        self._log_outage(exc, "refusing requests (redis_failure = closed)")
        raise LimitsUnavailable(
            "rate-limit and budget state is unavailable (the gateway cannot reach its state store or "
            "usage ledger); the request was refused, try again shortly",
            headers=(("retry-after", "1"),),
        )

    def _log_outage(self, exc: StateUnavailable, what: str) -> None:
        now = time.monotonic()
        if now - self._last_outage_log >= 10.0:
            self._last_outage_log = now
            log.error("limit state store unreachable (%s): %s", exc, what)

    async def close(self) -> None:
        await self.credits.close()
        await self.store.close()


def _expire_at(window: Window) -> int:
    return 0 if window.end is None else int(window.end) + KEEP_PAST_PERIODS_S


def _settle_of(admission: Admission, record: Settled) -> Settle | None:
    """What a finished request gives back and counts; None: nothing to tell the store."""
    ticket = admission.token
    if not isinstance(ticket, Ticket):
        return None
    plan = ticket.plan
    actual = record.prompt_tokens + record.completion_tokens
    delta = actual - ticket.reserved
    nano = to_nano(record.cost_usd)
    settle = Settle(
        [(k, limit, delta) for k, limit in plan.token_rates] if delta else (),
        plan.slot_keys,
        [(k, nano, at) for k, at in ticket.spend_keys] if nano else (),
        plan.meter,
        actual,
        ticket.lease,
        ticket.held,
    )
    if not (settle.tokens or settle.slots or settle.spend or settle.reservations
            or (settle.meter and actual)):
        return None
    return settle
