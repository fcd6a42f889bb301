"""Prepaid keys on the limiter's side: their credits in the state store, the 402 refusal and
the balance header. docs/credits.md has the whole picture.

A prepaid key is a budget that never resets (`plan.Spend(prepaid=True)`, counter `p:key:<id>`,
seeded with the key's all-time spend from the ledger) whose limit is its `credit_limit` plus its
credits: the store adds the credits total kept under `cr:key:<id>` when it checks the budget, so
admission reserves the estimated cost and settling charges the real one exactly as for budgets,
in one store operation, shared by every worker through Redis.

The credits total comes from the ledger (the truth: `credits` rows), tagged with the id of the
newest entry it counts (`seq`); the store keeps the newest only, so answers arriving out of
order never roll it back. It is refreshed: at a key's first request in this process; after a
top-up or a redemption through this worker (the owner's answer carries the new total); every
`RESYNC_S` in the background, one ledger call per worker for all keys (the entries newer than
the last one seen: a top-up from the CLI); and at once when a prepaid key would be refused (at
most once a second per key), so a key that was just topped up is never refused for a stale
total.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Protocol

from ..errors import GatewayError
from .answers import money
from .plan import NANO, Spend, credits_key
from .store import Ask, StateStore, StateUnavailable

log = logging.getLogger("tollgate.limits")
RESYNC_S = 5.0  # background sweep of the credit entries booked since the last one
RETRY_S = 1.0  # a refused prepaid key's credits are re-read at most this often
BALANCE_HEADER = "x-tollgate-balance-usd"


class CreditSource(Protocol):
    """The ledger's view of a key's credits (usage/credits_client.LedgerCredits)."""

    async def credit_total(self, key_id: str) -> tuple[Decimal, int]:
        """(sum of the key's credit entries in USD, id of its newest entry or 0)."""
        ...

    async def credit_changes(self, after: int) -> tuple[list[tuple[str, Decimal, int]], int]:
        """(key, credits total, newest entry id) of each key with an entry newer than `after`,
        and the newest entry id of all."""
        ...


class InsufficientCredit(GatewayError):
    """402 with OpenAI's `insufficient_quota`: SDKs do not retry it."""

    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


def to_nano(usd: Decimal) -> int:
    return int((usd * NANO).to_integral_value())


def balance_text(nano: int) -> str:
    """The header's value: USD with 6 decimals (a request can cost less than a cent)."""
    return f"{Decimal(nano) / NANO:.6f}"


def credit_refusal(spend: Spend, spent: int, credits: int, held: int, reserve: int) -> InsufficientCredit:
    balance = credits - spent
    overdraft = round((spend.usd or 0.0) * NANO)
    header = ((BALANCE_HEADER, balance_text(balance)),)
    if held and balance + overdraft > 0:
        return InsufficientCredit(
            f"insufficient credit for {spend.scope}: balance {money(balance / NANO)}, of which "
            f"{money(held / NANO)} is reserved by requests in flight, and this request reserves "
            f"{money(reserve / NANO)} (its prompt and max_tokens at the model's prices); try again when "
            "they finish, or lower max_tokens",
            headers=(*header, ("retry-after", "1")),
        )
    limit = f" (overdraft allowed: {money(overdraft / NANO)})" if overdraft else ""
    return InsufficientCredit(
        f"insufficient credit for {spend.scope}: balance {money(balance / NANO)}{limit}; top up the key "
        "or redeem a code (POST /v1/dashboard/redeem)",
        headers=(*header, ("x-should-retry", "false")),
    )


class CreditBook:
    """Per worker: when each prepaid key's credits were last read from the ledger."""

    def __init__(self, store: StateStore, source: CreditSource | None) -> None:
        self.store, self.source = store, source
        self._synced: dict[str, float] = {}
        self._pending: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = False
        self._seen = 0  # the newest entry id the sweep has applied
        self._swept = time.monotonic()
        self._sweeping = False

    async def ensure(self, key_id: str) -> None:
        """Before admitting a prepaid key: its credits are in the store (first use: wait for
        the ledger; then the background sweep keeps every key current, this request uses the
        store's)."""
        if key_id not in self._synced:
            await self.refresh(key_id)
        if not self._sweeping and time.monotonic() - self._swept >= RESYNC_S and self.source is not None:
            self._sweeping = True
            task = asyncio.get_running_loop().create_task(self._sweep())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def may_retry(self, key_id: str) -> bool:
        synced = self._synced.get(key_id)
        return self.source is not None and (synced is None or time.monotonic() - synced >= RETRY_S)

    async def refresh(self, key_id: str) -> None:
        """Read the key's credits from the ledger into the store; one read at a time per key.
        Raises StateUnavailable when the ledger cannot answer (the limiter fails closed)."""
        while (pending := self._pending.get(key_id)) is not None:
            await pending.wait()
            if key_id in self._synced:
                return
        done = self._pending[key_id] = asyncio.Event()
        try:
            if self.source is None:
                if not self._warned:
                    self._warned = True
                    log.error("prepaid key %s: no usage ledger on this gateway, its credits count as 0",
                              key_id)
                usd, seq = Decimal(0), 0
            else:
                try:
                    usd, seq = await self.source.credit_total(key_id)
                except Exception as exc:
                    raise StateUnavailable(f"usage ledger (credits): {type(exc).__name__}: {exc}") from None
            await self.apply(key_id, usd, seq)
        finally:
            del self._pending[key_id]
            done.set()

    async def apply(self, key_id: str, usd: Decimal, seq: int) -> None:
        """A credits total the ledger answered (also after a top-up through this worker)."""
        await self.store.set_credits(credits_key(key_id), to_nano(usd), seq)
        if len(self._synced) > 100_000:
            self._synced.clear()
        self._synced[key_id] = time.monotonic()

    async def _sweep(self) -> None:
        """One ledger call for the entries booked since the last sweep, whatever the number of
        keys: each changed key's total goes into the store."""
        try:
            assert self.source is not None
            changes, newest = await self.source.credit_changes(self._seen)
            for key_id, usd, seq in changes:
                await self.apply(key_id, usd, seq)
            self._seen = max(self._seen, newest)
        except Exception as exc:  # the next request tries again after RESYNC_S
            log.warning("reading new credit entries from the ledger failed: %s", exc)
        finally:
            self._swept = time.monotonic()
            self._sweeping = False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


REDEEM_PER_MINUTE = 10  # redemption attempts per key: guessing codes is hopeless, and stays so


async def redeem_attempt(store: StateStore, key_id: str) -> int | None:
    """Count one redemption attempt of `key_id` (a rate bucket shared by every worker): None
    when allowed, else the milliseconds until the next one is. Raises StateUnavailable."""
    grant = await store.acquire(Ask(rates=[(f"r:redeem:{key_id}", REDEEM_PER_MINUTE, 1)]))
    return None if grant.ok else max(grant.retry_ms, 1)
