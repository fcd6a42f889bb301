"""The admission hook the relay calls around every upstream request (quotas, budgets, rate
limits). This module holds the protocol and the no-limit default; the enforcing limiter
(`limiter.EnforcingLimiter`, over the memory or Redis store) implements the same protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ..config.snapshot import KeyRuntime, Snapshot
from ..policy.context import UsageView


@dataclass(slots=True)
class Admission:
    """What was reserved for one request; settled with the real usage at the end."""

    headers: list[tuple[str, str]] = field(default_factory=list)  # x-ratelimit-* to return
    reserved_tokens: int = 0
    token: Any = None  # limiter-specific bookkeeping (`Any`: mypyc rejects `object` in a dataclass)
    # computes the most used enforced budget before this request, (spend_usd, budget_usd,
    # period, scope): only `budget_threshold` alerts read it, so it is not computed otherwise
    budget_fn: Callable[[], tuple[float, float, str, str] | None] | None = None

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, headers: list[tuple[str, str]] | None = None, reserved_tokens: int = 0,
                 token: Any = None,
                 budget_fn: Callable[[], tuple[float, float, str, str] | None] | None = None) -> None:
        self.headers = headers if headers is not None else []
        self.reserved_tokens = reserved_tokens
        self.token = token
        self.budget_fn = budget_fn

    @property
    def budget(self) -> tuple[float, float, str, str] | None:
        return self.budget_fn() if self.budget_fn is not None else None


class Settled(Protocol):
    """What settling reads of a finished request: its usage row (`gateway.usage.record.UsageRecord`,
    which billing does not import: the ledger is a layer above, docs/architecture.md)."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> Decimal | None: ...


class Limiter(Protocol):
    async def admit(self, snapshot: Snapshot, key: KeyRuntime, model: str, estimate_tokens: int,
                    max_output_tokens: int = 0, reserve_usd: Decimal | None = None) -> Admission:
        """Reserve capacity or raise `RateLimited` (429, with Retry-After). `estimate_tokens` is
        the prompt estimate plus `max_output_tokens`, the client's output cap (0: none given);
        `reserve_usd` a cost known in advance (an asynchronous task's charge)."""
        ...

    async def settle(self, admission: Admission, record: Settled) -> None:
        """Replace the reservation with the actual tokens and cost of `record`."""
        ...

    def settle_now(self, admission: Admission, record: Settled) -> bool:
        """`settle` done at once when that needs no waiting (True); else False, and the caller
        awaits `settle` (saves a coroutine per request with the memory store)."""
        ...

    async def charge(self, admission: Admission, record: Settled) -> bool:
        """Add one part of a long admission's usage (a Realtime API response) without releasing
        it; False when a budget it is charged to is spent."""
        ...

    async def refund(self, snapshot: Snapshot, key: KeyRuntime, model: str, usd: Decimal) -> None:
        """Give back a charge already settled (a failed asynchronous task's) to the budgets."""
        ...

    async def usage(self, snapshot: Snapshot, key: KeyRuntime) -> UsageView | None:
        """What CEL rules see as `usage` for `key`; None when no rule reads it."""
        ...


class NoLimits:
    async def admit(self, snapshot: Snapshot, key: KeyRuntime, model: str, estimate_tokens: int,
                    max_output_tokens: int = 0, reserve_usd: Decimal | None = None) -> Admission:
        return Admission()

    async def refund(self, snapshot: Snapshot, key: KeyRuntime, model: str, usd: Decimal) -> None:
        return None

    async def settle(self, admission: Admission, record: Settled) -> None:
        return None

    def settle_now(self, admission: Admission, record: Settled) -> bool:
        return True

    async def charge(self, admission: Admission, record: Settled) -> bool:
        return True

    async def usage(self, snapshot: Snapshot, key: KeyRuntime) -> UsageView | None:
        return None
