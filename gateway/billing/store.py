"""Limit state behind one protocol: the in-process `MemoryStore` here, Redis in `redis_store`.

Both stores implement the same three atomic operations with the same semantics:

- rate buckets (rpm, tpm) are GCRA / token buckets: capacity = the per-minute limit, refilled
  continuously at limit/60 per second. A request needs `min(cost, limit)` units free; it is
  charged its full cost (a request larger than the bucket is admitted when the bucket is full
  and leaves it in debt). State is one number per bucket, the theoretical arrival time (TAT).
- concurrency slots are leases with an expiry, so a worker that dies mid-request cannot hold a
  slot forever.
- spend counters are integer nano-USD per budget period. Admission reserves the request's
  estimated cost on each budget it is charged to (a lease, like a concurrency slot: it expires
  after `lease_ms`, so a worker that dies mid-request cannot hold budget forever). A budget
  admits a request when spend + reservations in flight + this reservation <= limit, or, with
  nothing in flight, while spend < limit (a request larger than what is left is not refused
  forever: it runs alone, like a tpm request larger than the bucket). Settling releases the
  reservation and adds the real cost.

`acquire` checks everything and applies nothing unless everything passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

PERIOD_MS = 60_000.0  # rpm / tpm are per minute
EPSILON_MS = 0.001  # float slack: `limit` requests of 60000/limit ms each fill exactly one period
METER_TTL_S = 150


class StateUnavailable(Exception):
    """The shared state store cannot be reached (raised by stores, mapped by the limiter)."""


@dataclass(slots=True)
class Ask:
    """One request's checks, as store keys and numbers."""

    rates: Sequence[tuple[str, int, int]] = ()  # key, limit/min, cost
    slots: Sequence[tuple[str, int]] = ()  # key, limit
    budgets: Sequence[tuple[str, int, int]] = ()  # key, limit nano-USD (-1: none), reservation nano-USD
    meter: str | None = None  # per-key request/token meter for `usage.rpm` / `usage.tpm`
    lease: str = ""
    lease_ms: int = 0
    # prepaid: (budget index, credits key): that budget's limit is its overdraft plus the credits
    credits: Sequence[tuple[int, str]] = ()

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, rates: Sequence[tuple[str, int, int]] = (), slots: Sequence[tuple[str, int]] = (),
                 budgets: Sequence[tuple[str, int, int]] = (), meter: str | None = None, lease: str = "",
                 lease_ms: int = 0, credits: Sequence[tuple[int, str]] = ()) -> None:
        self.rates = rates
        self.slots = slots
        self.budgets = budgets
        self.meter = meter
        self.lease = lease
        self.lease_ms = lease_ms
        self.credits = credits


@dataclass(slots=True)
class Grant:
    ok: bool
    failed_kind: str = ""  # "rate" | "slot" | "budget"
    failed_index: int = 0
    retry_ms: int = 0
    remaining: list[int] = field(default_factory=list)  # per rate bucket
    reset_ms: list[int] = field(default_factory=list)  # per rate bucket: until full again
    spend: list[int] = field(default_factory=list)  # per budget, nano-USD before this request
    held: int = 0  # refused budget: nano-USD reserved by requests in flight
    credits: list[int] = field(default_factory=list)  # per Ask.credits (refused: the failed budget's)

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, ok: bool, failed_kind: str = "", failed_index: int = 0, retry_ms: int = 0,
                 remaining: list[int] | None = None, reset_ms: list[int] | None = None,
                 spend: list[int] | None = None, held: int = 0, credits: list[int] | None = None) -> None:
        self.ok = ok
        self.failed_kind = failed_kind
        self.failed_index = failed_index
        self.retry_ms = retry_ms
        self.remaining = remaining if remaining is not None else []
        self.reset_ms = reset_ms if reset_ms is not None else []
        self.spend = spend if spend is not None else []
        self.held = held
        self.credits = credits if credits is not None else []


@dataclass(slots=True)
class Settle:
    """What to give back or charge at the end of one request."""

    tokens: Sequence[tuple[str, int, int]] = ()  # tpm key, limit, delta
    slots: Sequence[str] = ()
    spend: Sequence[tuple[str, int, int]] = ()  # key, nano-USD, expire-at (0: never)
    meter: str | None = None
    meter_tokens: int = 0
    lease: str = ""
    reservations: Sequence[str] = ()  # spend keys whose cost reservation by `lease` ends

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, tokens: Sequence[tuple[str, int, int]] = (), slots: Sequence[str] = (),
                 spend: Sequence[tuple[str, int, int]] = (), meter: str | None = None, meter_tokens: int = 0,
                 lease: str = "", reservations: Sequence[str] = ()) -> None:
        self.tokens = tokens
        self.slots = slots
        self.spend = spend
        self.meter = meter
        self.meter_tokens = meter_tokens
        self.lease = lease
        self.reservations = reservations


class StateStore(Protocol):
    description: str

    async def acquire(self, ask: Ask) -> Grant: ...

    async def release(self, settle: Settle) -> None: ...

    async def read(self, spend_keys: list[str], meter: str | None) -> tuple[list[int], int, int]:
        """Spend counters (nano-USD), and the meter's requests and tokens over the last minute."""
        ...

    async def seed(self, key: str, nano: int, expire_at: int) -> None:
        """Set a spend counter unless it already exists (seeding from the usage ledger)."""
        ...

    async def set_credits(self, key: str, nano: int, seq: int) -> None:
        """A prepaid key's credits as the ledger counted them up to its entry `seq`: kept only if
        `seq` is newer than what the store holds (answers may arrive out of order)."""
        ...

    async def close(self) -> None: ...


def sliding(now_ms: float, current: int, previous: int) -> int:
    """Sliding-window estimate from two fixed minutes: the previous one weighted by overlap."""
    weight = 1.0 - (now_ms % PERIOD_MS) / PERIOD_MS
    return max(0, int(current + previous * weight))


_NO_CREDITS: dict[int, int] = {}  # never written: the common case builds no dict


class MemoryStore:
    """Single-process state: plain dicts, no locking needed (one event loop, no awaits inside)."""

    description = "memory"

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}
        self.leases: dict[str, dict[str, float]] = {}
        self.spend: dict[str, tuple[int, int]] = {}  # key -> (nano, expire_at epoch s)
        self.held: dict[str, dict[str, tuple[int, float]]] = {}  # spend key -> lease -> (nano, until ms)
        self.held_sum: dict[str, int] = {}  # spend key -> nano-USD reserved in flight
        self.meters: dict[str, int] = {}
        self.credits: dict[str, tuple[int, int]] = {}  # credits key -> (nano-USD, seq)
        self._pruned = 0.0

    async def acquire(self, ask: Ask) -> Grant:
        return self.acquire_now(ask)

    async def release(self, settle: Settle) -> None:
        self.release_now(settle)

    # The limiter calls these directly (no coroutine per request): this store never waits.
    def acquire_now(self, ask: Ask) -> Grant:
        now = time.time() * 1000.0
        tat_of = self.tat
        tats: list[float] = []
        for i, (key, limit, cost) in enumerate(ask.rates):
            interval = PERIOD_MS / limit
            tat = tat_of.get(key, now)
            if tat < now:
                tat = now
            need = tat + (cost if cost < limit else limit) * interval - now
            if need > PERIOD_MS + EPSILON_MS:
                return Grant(False, "rate", i, math.ceil(need - PERIOD_MS))
            tats.append(tat + cost * interval)
        for j, (key, limit) in enumerate(ask.slots):
            held = self.leases.get(key)
            if held is not None and len(held) >= limit:  # full: drop expired leases, look again
                for lease in [k for k, until in held.items() if until <= now]:
                    del held[lease]
                if len(held) >= limit:
                    return Grant(False, "slot", j, 1000)
        spend: list[int] = []
        extra = {b: self.credits.get(k, (0, 0))[0] for b, k in ask.credits} if ask.credits else _NO_CREDITS
        for b, (key, limit, reserve) in enumerate(ask.budgets):
            value = self._spend(key, now)
            if limit >= 0:
                if b in extra:
                    limit += extra[b]  # may go below zero: a debited key is refused
                reserved = self.held_sum.get(key, 0)
                if reserved and value + reserved + reserve > limit:  # over: drop expired leases, look again
                    reserved = self._expire_held(key, now)
                if value >= limit or (reserved and value + reserved + reserve > limit):
                    return Grant(False, "budget", b, 0, spend=[*spend, value], held=reserved,
                                 credits=[extra[b]] if b in extra else [])
            spend.append(value)
        remaining: list[int] = []
        reset_ms: list[int] = []
        for (key, limit, _), new in zip(ask.rates, tats, strict=True):
            tat_of[key] = new
            ahead = new - now
            remaining.append(max(0, int((PERIOD_MS - ahead + EPSILON_MS) * limit / PERIOD_MS)))
            reset_ms.append(math.ceil(ahead))
        for key, _ in ask.slots:
            held = self.leases.get(key)
            if held is None:
                held = self.leases[key] = {}
            held[ask.lease] = now + ask.lease_ms
        for key, limit, reserve in ask.budgets:
            if limit >= 0 and reserve > 0:
                leases = self.held.get(key)
                if leases is None:
                    leases = self.held[key] = {}
                leases[ask.lease] = (reserve, now + ask.lease_ms)
                self.held_sum[key] = self.held_sum.get(key, 0) + reserve
        if ask.meter is not None:
            name = f"{ask.meter}:r:{int(now // PERIOD_MS)}"
            self.meters[name] = self.meters.get(name, 0) + 1
        if now - self._pruned >= PERIOD_MS:
            self._prune(now)
        return Grant(True, "", 0, 0, remaining, reset_ms, spend, credits=list(extra.values()))

    def release_now(self, settle: Settle) -> None:
        now = time.time() * 1000.0
        for key, limit, delta in settle.tokens:
            tat = self.tat.get(key)
            new = (now if tat is None or tat < now else tat) + delta * (PERIOD_MS / limit)
            if new <= now:
                self.tat.pop(key, None)
            else:
                self.tat[key] = new
        for key in settle.slots:
            held = self.leases.get(key)
            if held is not None:
                held.pop(settle.lease, None)
        for key in settle.reservations:
            leases = self.held.get(key)
            entry = leases.pop(settle.lease, None) if leases is not None else None
            if entry is not None:
                self._unhold(key, entry[0])
        for key, nano, expire_at in settle.spend:
            self.spend[key] = (self._spend(key, now) + nano, expire_at)
        if settle.meter is not None and settle.meter_tokens:
            name = f"{settle.meter}:t:{int(now // PERIOD_MS)}"
            self.meters[name] = self.meters.get(name, 0) + settle.meter_tokens

    async def read(self, spend_keys: list[str], meter: str | None) -> tuple[list[int], int, int]:
        now = time.time() * 1000.0
        spend = [self._spend(k, now) for k in spend_keys]
        if meter is None:
            return spend, 0, 0
        minute = int(now // PERIOD_MS)
        m = self.meters
        rpm = sliding(now, m.get(f"{meter}:r:{minute}", 0), m.get(f"{meter}:r:{minute - 1}", 0))
        tpm = sliding(now, m.get(f"{meter}:t:{minute}", 0), m.get(f"{meter}:t:{minute - 1}", 0))
        return spend, rpm, tpm

    async def seed(self, key: str, nano: int, expire_at: int) -> None:
        if key not in self.spend:
            self.spend[key] = (nano, expire_at)

    async def set_credits(self, key: str, nano: int, seq: int) -> None:
        held = self.credits.get(key)
        if held is None or seq > held[1]:
            self.credits[key] = (nano, seq)

    async def close(self) -> None:
        return None

    def _spend(self, key: str, now_ms: float) -> int:
        entry = self.spend.get(key)
        if entry is None or (entry[1] and entry[1] * 1000 <= now_ms):
            return 0
        return entry[0]

    def _unhold(self, key: str, nano: int) -> None:
        left = self.held_sum.get(key, 0) - nano
        if left > 0:
            self.held_sum[key] = left
        else:
            self.held_sum.pop(key, None)
            self.held.pop(key, None)

    def _expire_held(self, key: str, now: float) -> int:
        """Drop the reservations of `key` whose lease ran out (their worker died); what is left."""
        leases = self.held.get(key)
        if leases:
            for lease in [k for k, (_, until) in leases.items() if until <= now]:
                self._unhold(key, leases.pop(lease)[0])
        return self.held_sum.get(key, 0)

    def _prune(self, now: float) -> None:
        """Drop state that has run out, once a minute (keeps memory bounded)."""
        self._pruned = now
        self.tat = {k: v for k, v in self.tat.items() if v > now}
        self.leases = {k: v for k, v in self.leases.items() if v}
        for key in list(self.held):
            self._expire_held(key, now)
        self.spend = {k: v for k, v in self.spend.items() if not v[1] or v[1] * 1000 > now}
        oldest = int(now // PERIOD_MS) - 1
        self.meters = {k: v for k, v in self.meters.items() if int(k.rsplit(":", 1)[1]) >= oldest}
