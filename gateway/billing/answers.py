"""What the limiter tells clients: OpenAI's x-ratelimit-* headers, and clear refusals."""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache

from ..config.periods import Window
from ..errors import BudgetExceeded, GatewayError, RateLimited
from .plan import NANO, Plan, Spend
from .store import Grant


@lru_cache(maxsize=4096)  # two per admitted request; the values repeat
def duration(ms: int) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def money(usd: float) -> str:
    """$12.50, $0.25, and small amounts without rounding them to $0.00: $0.000066."""
    if usd == 0 or abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    return "$" + f"{usd:.9f}".rstrip("0")


def rate_headers(plan: Plan, grant: Grant) -> list[tuple[str, str]]:
    """Per unit, the tightest bucket: least remaining, then the longest until full."""
    out: list[tuple[str, str]] = []
    remaining, reset = grant.remaining, grant.reset_ms
    for limit_name, remaining_name, reset_name, indexes in plan.header_groups:
        best = indexes[0]
        for i in indexes[1:]:
            if remaining[i] < remaining[best] or (remaining[i] == remaining[best] and reset[i] > reset[best]):
                best = i
        out += (
            (limit_name, plan.limit_strs[best]),
            # the bucket's tolerance can put the estimate a hair above the limit: never report that
            (remaining_name, str(min(remaining[best], plan.rates[best].limit))),
            (reset_name, duration(reset[best])),
        )
    return out


def _retry(ms: int) -> tuple[tuple[str, str], ...]:
    return (("retry-after", str(max(1, math.ceil(ms / 1000)))), ("retry-after-ms", str(max(ms, 1))))


def refusal(plan: Plan, grant: Grant, windows: list[Window], estimate: int, reserve: int = 0) -> GatewayError:
    i = grant.failed_index
    if grant.failed_kind == "rate":
        rate = plan.rates[i]
        short = "rpm" if rate.unit == "requests" else "tpm"
        need = f" (this request reserves ~{estimate} tokens)" if rate.unit == "tokens" else ""
        headers = (
            *_retry(grant.retry_ms),
            (f"x-ratelimit-limit-{rate.unit}", str(rate.limit)),
            (f"x-ratelimit-remaining-{rate.unit}", "0"),
            (f"x-ratelimit-reset-{rate.unit}", duration(grant.retry_ms)),
        )
        return RateLimited(
            f"rate limit reached for {rate.scope}: {rate.limit} {rate.unit} per minute ({short}){need}; "
            f"try again in {duration(grant.retry_ms)}",
            headers=headers,
        )
    if grant.failed_kind == "slot":
        slots = plan.slots[i]
        return RateLimited(
            f"too many concurrent requests for {slots.scope}: at most {slots.limit} at a time "
            "(concurrency); try again when one finishes",
            code="concurrency_limit_exceeded",
            headers=_retry(grant.retry_ms),
        )
    nano = grant.spend[-1] if grant.spend else 0
    return budget_refusal(plan.spends[i], windows[i], nano, grant.held, reserve)


def budget_refusal(spend: Spend, window: Window, nano: int, held: int = 0,
                   reserve: int = 0) -> BudgetExceeded:
    usd = spend.usd or 0.0
    if held and nano < round(usd * NANO):
        # Not spent yet, but committed: requests in flight reserved the rest of the budget.
        # Retrying may succeed when they finish (their real cost is usually below the estimate).
        period = "in total" if window.end is None else f"this {spend.period}"
        return BudgetExceeded(
            f"budget nearly exhausted for {spend.scope}: spent {money(nano / NANO)} of {money(usd)} "
            f"{period}, {money(held / NANO)} is reserved by requests in flight and this request "
            f"reserves {money(reserve / NANO)} (its prompt and max_tokens at the model's prices); "
            "try again when requests in flight finish, or lower max_tokens",
            headers=(("retry-after", "1"), ("retry-after-ms", "1000")),
        )
    headers: tuple[tuple[str, str], ...]
    if window.end is None:
        when, headers = "in total (the budget does not reset)", (("x-should-retry", "false"),)
    else:
        resets = datetime.fromtimestamp(window.end, window.start.tzinfo).isoformat()
        left = window.seconds_left(datetime.now().timestamp()) or 0.0
        when = f"this {spend.period} (resets {resets})"
        headers = (("x-should-retry", "false"), ("retry-after", str(max(1, math.ceil(left)))))
    return BudgetExceeded(
        f"budget exhausted for {spend.scope}: spent {money(nano / NANO)} of {money(usd)} {when}",
        headers=headers,
    )
