"""Pricing against hand-computed Decimal amounts, per API family's usage convention."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.billing.pricing import action_cost, compute_cost
from gateway.config import load_snapshot
from gateway.core.usage import TokenUsage
from gateway.providers.wire.openai_usage import usage_from_body

BUNDLE = """schema = 1
[settings]
pricing = "lenient"
[[provider]]
id = "p"
kind = "mock"
models = ["gpt-4o-mini", "claude", "gemini", "embed", "img", "tiered", "mj", "tts", "cache-tier"]

[price.gpt-4o-mini]
input = 0.15
output = 0.60
cached_input = 0.075

[price.claude]        # Anthropic-style: cache writes cost more, reads less
input = 3.0
output = 15.0
cached_input = 0.30
cache_write = 3.75

[price.gemini]
input = 1.25
output = 10.0
cached_input = 0.3125
reasoning = 10.0

[price.embed]
input = 0.02

[price.img]
per_image = 0.04
per_request = 0.001

[price.tiered]
input = 1.25
output = 10.0
[[price.tiered.tiers]]
when = "tokens.prompt > 200000"
input = 2.5
output = 15.0

[price.tts]
per_audio_second = 0.0001
per_request = 0.002

[price.cache-tier]    # a tier on cached tokens and the model; it sets input only
input = 1.0
output = 4.0
reasoning = 8.0
[[price.cache-tier.tiers]]
when = 'tokens.cached > 1000 && model == "cache-tier"'
input = 2.0

[price.mj]
per_action = { mj_imagine = 0.05, mj_upscale = 0.02 }
"""


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    directory: Path = tmp_path_factory.mktemp("prices")
    (directory / "b.toml").write_text(BUNDLE)
    return load_snapshot(directory)


def cost(snap, model: str, usage: TokenUsage, multiplier: float = 1.0) -> Decimal | None:  # type: ignore[no-untyped-def]
    return compute_cost(snap.price_for("p", model), usage, multiplier)


def test_openai_with_cached_tokens(snap) -> None:  # type: ignore[no-untyped-def]
    body = (b'{"usage": {"prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500,'
            b' "prompt_tokens_details": {"cached_tokens": 1500}}}')
    usage = usage_from_body(body, "chat/completions")
    assert usage is not None and usage.cached_tokens == 1500
    # 500 uncached * 0.15 + 1500 cached * 0.075 + 500 out * 0.60, per million
    expected = (Decimal(500) * Decimal("0.15") + Decimal(1500) * Decimal("0.075")
                + Decimal(500) * Decimal("0.60")) / Decimal(1_000_000)
    assert cost(snap, "gpt-4o-mini", usage) == expected.quantize(Decimal("1e-9"))
    assert cost(snap, "gpt-4o-mini", usage) == Decimal("0.000487500")


def test_anthropic_cache_read_and_write(snap) -> None:  # type: ignore[no-untyped-def]
    # Anthropic reports input_tokens=100 (excluding cache), cache_read=4000, cache_creation=1000;
    # normalised: prompt = 100 + 4000 + 1000
    usage = TokenUsage(prompt_tokens=5100, cached_tokens=4000, cache_write_tokens=1000, completion_tokens=200)
    expected = (Decimal(100) * 3 + Decimal(4000) * Decimal("0.30") + Decimal(1000) * Decimal("3.75")
                + Decimal(200) * 15) / Decimal(1_000_000)
    assert cost(snap, "claude", usage) == expected.quantize(Decimal("1e-9")) == Decimal("0.008250000")


def test_gemini_with_reasoning(snap) -> None:  # type: ignore[no-untyped-def]
    usage = TokenUsage(prompt_tokens=1000, cached_tokens=200, completion_tokens=900, reasoning_tokens=600)
    expected = (Decimal(800) * Decimal("1.25") + Decimal(200) * Decimal("0.3125") + Decimal(300) * 10
                + Decimal(600) * 10) / Decimal(1_000_000)
    assert cost(snap, "gemini", usage) == expected.quantize(Decimal("1e-9")) == Decimal("0.010062500")


def test_embeddings_input_only(snap) -> None:  # type: ignore[no-untyped-def]
    usage = usage_from_body(b'{"usage": {"prompt_tokens": 12345, "total_tokens": 12345}}', "embeddings")
    assert usage is not None
    assert cost(snap, "embed", usage) == Decimal("0.000246900")


def test_images_per_image_and_request(snap) -> None:  # type: ignore[no-untyped-def]
    usage = usage_from_body(b'{"created": 1, "data": [{"url": "a"}, {"url": "b"}, {"url": "c"}]}',
                            "images/generations")
    assert usage is not None and usage.images == 3
    assert cost(snap, "img", usage) == Decimal("0.121000000")


def test_tiers_apply_above_the_threshold(snap) -> None:  # type: ignore[no-untyped-def]
    small = TokenUsage(prompt_tokens=100_000, completion_tokens=1000)
    large = TokenUsage(prompt_tokens=300_000, completion_tokens=1000)
    assert cost(snap, "tiered", small) == Decimal("0.135000000")  # 0.125 + 0.010
    assert cost(snap, "tiered", large) == Decimal("0.765000000")  # 0.75 + 0.015


def test_multipliers(snap) -> None:  # type: ignore[no-untyped-def]
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=0)
    assert cost(snap, "gpt-4o-mini", usage, 0.8) == Decimal("0.120000000")
    assert cost(snap, "gpt-4o-mini", usage, 1.5 * 0.5) == Decimal("0.112500000")


def test_missing_price_is_none_not_zero(snap) -> None:  # type: ignore[no-untyped-def]
    assert compute_cost(None, TokenUsage(prompt_tokens=10), 1.0) is None
    assert snap.price_for("p", "unknown") is None


def test_midjourney_actions(snap) -> None:  # type: ignore[no-untyped-def]
    price = snap.price_for("p", "mj")
    assert action_cost(price, "mj_imagine") == Decimal("0.050000000")
    assert action_cost(price, "mj_upscale", 2.0) == Decimal("0.040000000")
    assert action_cost(price, "mj_describe") is None


def test_audio_seconds_and_per_request(snap) -> None:  # type: ignore[no-untyped-def]
    usage = TokenUsage(audio_seconds=12.5)
    assert cost(snap, "tts", usage) == Decimal("0.003250000")  # 12.5 * 0.0001 + 0.002
    assert isinstance(cost(snap, "tts", usage), Decimal)


def test_a_tier_sets_some_rates_and_the_rest_follow(snap) -> None:  # type: ignore[no-untyped-def]
    # tier off: 2500 uncached + 500 cached at 1.0, 60 plain out at 4.0, 40 reasoning at 8.0
    low = TokenUsage(prompt_tokens=3000, cached_tokens=500, completion_tokens=100, reasoning_tokens=40)
    assert cost(snap, "cache-tier", low) == Decimal("0.003560000")
    # tier on: input 2.0, and cached_input (unset anywhere) follows the tier's input
    high = TokenUsage(prompt_tokens=3000, cached_tokens=2000, completion_tokens=100, reasoning_tokens=40)
    expected = (Decimal(1000) * 2 + Decimal(2000) * 2 + Decimal(60) * 4 + Decimal(40) * 8) / Decimal(10**6)
    assert cost(snap, "cache-tier", high) == expected == Decimal("0.00656")
    assert cost(snap, "cache-tier", high, 0.5) == Decimal("0.003280000")


def test_amounts_are_exact_decimals_not_floats(snap) -> None:  # type: ignore[no-untyped-def]
    # (0.15 + 0.60) * 0.1 is 0.07500000000000001 in floats; exactly 0.075 here
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    got = cost(snap, "gpt-4o-mini", usage, 0.1)
    assert got == Decimal("0.075000000") and got.as_tuple().exponent == -9


def test_a_reloaded_price_is_not_served_from_the_previous_bundles_rates(tmp_path: Path) -> None:
    """Rates are resolved once per price object: a reload's new objects get their own."""
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=0)
    costs = []
    for rate in ("1.5", "2.5"):
        (tmp_path / "b.toml").write_text(BUNDLE.replace("input = 0.15", f"input = {rate}", 1))
        costs.append(compute_cost(load_snapshot(tmp_path).price_for("p", "gpt-4o-mini"), usage))
    assert costs == [Decimal("1.5"), Decimal("2.5")]
