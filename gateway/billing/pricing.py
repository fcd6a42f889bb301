"""Pricing as pure functions over the bundle's price table. Decimal throughout, never float.

Token convention (gateway/core/usage.py): prompt_tokens includes cache reads and writes;
completion_tokens includes reasoning. So the uncached input is
`prompt - cached - cache_write - audio_prompt`, and plain output is `completion - reasoning -
audio_completion`, each billed at its own rate (cached_input, cache_write and audio_input default
to input, reasoning and audio_output to output).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from ..config.snapshot import PriceRuntime
from ..config.types import Price, PriceTier
from ..core.usage import TokenUsage
from ..policy.cel import CelEvalError

MILLION = Decimal(1_000_000)
NANO = Decimal("0.000000001")
ZERO = Decimal(0)


@lru_cache(maxsize=4096)
def dec(value: float) -> Decimal:
    """Bundle rates are TOML floats; their shortest repr is the decimal the operator wrote."""
    return Decimal(repr(value))


def effective_rates(price: PriceRuntime, usage: TokenUsage, model: str = "") -> Price | PriceTier:
    """The first tier whose `when` holds replaces the rates it sets; else the base rates.
    A tier's `when` reads `tokens.prompt|completion|cached|total` and `model`."""
    if not price.tiers:
        return price.rates
    tokens = {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "cached": usage.cached_tokens,
        "total": usage.prompt_tokens + usage.completion_tokens,
    }

    def lookup(root: str, name: str | None) -> Any:
        if root == "tokens":
            return tokens if name is None else tokens[name]
        return model

    for expr, tier in price.tiers:
        try:
            if expr.evaluate(lookup) is True:
                return tier  # type: ignore[no-any-return]
        except CelEvalError:
            continue  # a tier that cannot be evaluated does not apply
    return price.rates


class _Rates(NamedTuple):
    """One (tier, base) pair's rates as Decimals, the defaults applied."""

    input: Decimal
    output: Decimal
    cached: Decimal
    cache_write: Decimal
    reasoning: Decimal
    audio_input: Decimal
    audio_output: Decimal
    per_request: Decimal
    per_image: Decimal
    per_audio_second: Decimal


# Rates resolved once per (tier, base) pair of the live bundle: the lookups and float-to-Decimal
# conversions were ~3% of a worker's time per request (py-spy, benchmark bundle). Keyed by ids,
# each entry keeps its two objects alive (so an id is not reused while it is cached) and is
# checked by identity.
_resolved: dict[tuple[int, int], tuple[object, object, _Rates]] = {}


def _rates(tier: Price | PriceTier, base: Price) -> _Rates:
    found = _resolved.get((id(tier), id(base)))
    if found is not None and found[0] is tier and found[1] is base:
        return found[2]

    def rate(name: str, default: Decimal = ZERO) -> Decimal:
        value: float | None = getattr(tier, name, None)  # a tier sets some rates, not all
        if value is None:
            value = getattr(base, name)
        return default if value is None else dec(value)

    input_rate, output_rate = rate("input"), rate("output")
    rates = _Rates(input_rate, output_rate, rate("cached_input", input_rate), rate("cache_write", input_rate),
                   rate("reasoning", output_rate), rate("audio_input", input_rate),
                   rate("audio_output", output_rate), dec(base.per_request), dec(base.per_image),
                   dec(base.per_audio_second))
    if len(_resolved) > 4096:  # bundles reloaded many times: start afresh
        _resolved.clear()
    _resolved[(id(tier), id(base))] = (tier, base, rates)
    return rates


def compute_cost(price: PriceRuntime | None, usage: TokenUsage, multiplier: float = 1.0) -> Decimal | None:
    """USD for one request, to the nano-dollar; None when the model has no price (never a
    silent $0). Rates are USD per million tokens, plus per request / image / audio second."""
    if price is None:
        return None
    r = _rates(effective_rates(price, usage, price.model), price.rates)
    audio_in, audio_out = usage.audio_prompt_tokens, usage.audio_completion_tokens
    uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens - audio_in, 0)
    plain_out = max(usage.completion_tokens - usage.reasoning_tokens - audio_out, 0)
    # terms with no tokens are skipped: adding an exact zero changes nothing after quantize
    tokens = uncached * r.input + plain_out * r.output
    if usage.cached_tokens:
        tokens += usage.cached_tokens * r.cached
    if usage.cache_write_tokens:
        tokens += usage.cache_write_tokens * r.cache_write
    if usage.reasoning_tokens:
        tokens += usage.reasoning_tokens * r.reasoning
    tokens /= MILLION
    if audio_in or audio_out:  # Realtime API audio (each part of the totals above)
        tokens += (audio_in * r.audio_input + audio_out * r.audio_output) / MILLION
    if r.per_request or r.per_image or r.per_audio_second:
        tokens += (r.per_request + usage.images * r.per_image
                   + Decimal(repr(usage.audio_seconds)) * r.per_audio_second)
    if multiplier != 1.0:
        tokens *= dec(multiplier)
    return tokens.quantize(NANO)


def action_cost(price: PriceRuntime | None, action: str, multiplier: float = 1.0) -> Decimal | None:
    """A Midjourney-style per-action price (`per_action = { mj_imagine = 0.05 }`)."""
    if price is None or action not in price.rates.per_action:
        return None
    return (dec(price.rates.per_action[action]) * dec(multiplier)).quantize(NANO)


def seconds_cost(
    price: PriceRuntime | None, seconds: float, size: str, multiplier: float = 1.0
) -> Decimal | None:
    """A generated video: `per_second_by_size[size]` (else `per_second`) times its seconds; None
    when the model has no per-second price."""
    if price is None:
        return None
    rate = price.rates.per_second_by_size.get(size, price.rates.per_second)
    if not rate and not price.rates.per_second_by_size:
        return None
    return (dec(rate) * Decimal(repr(float(seconds))) * dec(multiplier)).quantize(NANO)


def peak_rates(price: PriceRuntime) -> tuple[Decimal, Decimal, Decimal]:
    """The highest USD per million prompt tokens and per million output tokens any of the
    price's tiers can charge, and the per-request price: an upper bound for reservations made
    before the request's real usage (and so its tier) is known."""
    base = price.rates
    prompt = max([base.input, base.audio_input or 0.0, *(t.input for t in base.tiers if t.input is not None)])
    output = max([base.output, base.reasoning or 0.0, base.audio_output or 0.0,
                  *(t.output for t in base.tiers if t.output is not None)])
    return dec(prompt), dec(output), dec(base.per_request)


def key_multiplier(key_multiplier: float, group_multiplier: float | None) -> Decimal:
    """The price multiplier a key pays: its own times its group's (as usage rows are priced)."""
    return dec(key_multiplier) * dec(1.0 if group_multiplier is None else group_multiplier)
