"""Every bundle under examples/ is valid, and does what its README says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import Snapshot, load_snapshot
from gateway.policy.context import Facts, KeyView, RequestView, UsageView
from gateway.policy.rules import Decision

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith("."))
SECRETS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "GEMINI_API_KEY": "g-1"}


def example(name: str, env: dict[str, str] | None = None) -> Snapshot:
    return load_snapshot(EXAMPLES / name, env=env or {}, allow_missing_env=env is None)


@pytest.mark.parametrize("name", ALL)
def test_example_is_valid(name: str) -> None:
    snap = example(name)
    assert snap.providers
    assert snap.warnings == ()
    assert (EXAMPLES / name / "README.md").is_file()


def test_the_documented_examples_exist() -> None:
    assert {"midjourney", "multi-provider", "tiers-and-budgets"} <= set(ALL)


def decide(snap: Snapshot, key_id: str, model: str, **request: Any) -> Decision:
    key = snap.keys_by_id[key_id]
    usage = UsageView(budget_fraction=request.pop("budget_fraction", 0.0))
    facts = Facts(
        RequestView(model=model, endpoint="/v1/chat/completions", **request),
        KeyView(key.id, key.group.id if key.group else "", list(key.tags)),
        usage,
    )
    return snap.rules.evaluate(facts.lookup)


def tiers(snap: Snapshot, route: str) -> list[list[tuple[str, str, int]]]:
    return [[(t.provider, t.model, t.weight) for t in tier] for tier in snap.routes[route].tiers]


# multi-provider -----------------------------------------------------------------------------------


def test_multi_provider_with_secrets() -> None:
    snap = example("multi-provider", env={**SECRETS, "VLLM_URL": "http://gpu:8000/v1"})
    assert {p.id: p.kind for p in snap.providers.values()} == {
        "openai": "openai",
        "anthropic": "anthropic",
        "gemini": "gemini",
        "vllm": "openai-compatible",
    }
    assert snap.providers["openai"].api_keys == ("sk-o",)
    assert snap.providers["vllm"].base_url == "http://gpu:8000/v1"
    assert example("multi-provider").providers["vllm"].base_url == "http://127.0.0.1:8000/v1"


def test_multi_provider_routes() -> None:
    snap = example("multi-provider")
    assert tiers(snap, "fast") == [
        [("openai", "gpt-4o-mini", 3), ("anthropic", "claude-haiku-4-5", 1), ("gemini", "gemini-2.5-flash", 1)],
        [("vllm", "meta-llama/Llama-3.1-8B-Instruct", 1)],
    ]
    assert tiers(snap, "smart") == [
        [("openai", "gpt-4o", 1), ("anthropic", "claude-sonnet-4-5", 1)],
        [("gemini", "gemini-2.5-pro", 1)],
    ]
    assert snap.routes["smart"].fallbacks == ("fast",)
    assert snap.routes["long-context"].fallbacks == ("smart", "fast")
    assert snap.routes["local"].fallbacks == ()  # confidential data never leaves
    assert {t.provider for tier in snap.routes["local"].tiers for t in tier} == {"vllm"}
    for route in snap.routes.values():  # strict pricing: every upstream model has a price
        for tier in route.tiers:
            for t in tier:
                assert snap.price_for(t.provider, t.model) is not None, (route.name, t)


def test_multi_provider_keys_and_rules() -> None:
    snap = example("multi-provider")
    assert snap.key_for("tg-demo-app").id == "app"  # type: ignore[union-attr]
    assert snap.key_for("tg-demo-research").id == "research"  # type: ignore[union-attr]
    assert snap.admin_for("tg-demo-admin").id == "ops"  # type: ignore[union-attr]
    assert snap.models_for(snap.keys_by_id["app"]) == ["embed", "fast", "smart"]

    d = decide(snap, "app", "smart", message_count=50, stream=True)
    assert (d.route, d.tags) == ("long-context", ("stream",))
    confidential = {"confidential": "true"}
    assert decide(snap, "research", "smart", message_count=50, metadata=confidential).route == "local"
    assert decide(snap, "app", "fast").matched == ()


# tiers-and-budgets --------------------------------------------------------------------------------


def test_tiers_and_budgets_plans() -> None:
    snap = example("tiers-and-budgets", env=SECRETS)
    free, pro, enterprise = (snap.groups[g] for g in ("free", "pro", "enterprise"))
    assert (free.limits.rpm, free.limits.tpm, free.limits.concurrency) == (20, 40000, 2)
    assert (free.budget.usd, free.budget.period) == (5, "month")  # type: ignore[union-attr]
    assert pro.model_limits["gpt-4o"].rpm == 120
    assert (pro.price_multiplier, enterprise.price_multiplier) == (1.2, 0.9)
    assert snap.settings.timezone == "Europe/Berlin"

    keys = {secret: snap.key_for(secret).id for secret in  # type: ignore[union-attr]
            ("tg-demo-free", "tg-demo-pro", "tg-demo-pro-team", "tg-demo-enterprise")}
    assert keys == {"tg-demo-free": "free-alice", "tg-demo-pro": "pro-bob",
                    "tg-demo-pro-team": "pro-data-team", "tg-demo-enterprise": "acme"}
    alice, team, acme = (snap.keys_by_id[k] for k in ("free-alice", "pro-data-team", "acme"))
    assert alice.allows_model("gpt-4o-mini") and alice.allows_model("fast")
    assert not alice.allows_model("smart") and not alice.allows_model("claude-sonnet-4-5")
    assert team.allows_model("long-context") and not team.allows_model("fast")
    assert (team.budget.usd, team.budget.period) == (50, "week")  # type: ignore[union-attr]
    assert acme.allows_model("anything") and acme.allows_ip("203.0.113.9")
    assert not acme.allows_ip("198.51.100.1")
    assert acme.expires is not None and acme.expires.year == 2027


def test_tiers_and_budgets_rules() -> None:
    snap = example("tiers-and-budgets")
    d = decide(snap, "free-alice", "gpt-4o")
    assert (d.deny_rule, d.deny) == (
        "free-tier-no-gpt4",
        "gpt-4o needs the pro plan; gpt-4o-mini and `fast` are on the free plan",
    )
    assert decide(snap, "free-alice", "gpt-4o-mini").deny is None
    assert decide(snap, "free-alice", "gpt-4o-mini", max_tokens=10000).deny_rule == "free-tier-max-tokens"
    assert decide(snap, "pro-bob", "gpt-4o", max_tokens=10000).deny is None

    assert decide(snap, "pro-bob", "smart", budget_fraction=0.95).set_model == "fast"
    assert decide(snap, "pro-bob", "smart", budget_fraction=0.5).set_model is None
    assert decide(snap, "acme", "smart", budget_fraction=0.95).set_model is None

    assert decide(snap, "pro-bob", "smart", message_count=60).route == "long-context"
    assert decide(snap, "free-alice", "fast", message_count=60).route is None

    d = decide(snap, "acme", "claude-sonnet-4-5", stream=True)
    assert (d.headers, d.tags) == ((("x-priority", "high"),), ("stream",))
    d = decide(snap, "pro-data-team", "long-context", stream=True)
    assert d.tags == ("stream", "beta-long-context")


def test_tiers_and_budgets_long_context_price() -> None:
    snap = example("tiers-and-budgets")
    price = snap.price_for("gemini", "gemini-2.5-pro")
    assert price is not None
    (expr, tier), = price.tiers

    def over(prompt: int) -> bool:
        tokens = {"prompt": prompt, "completion": 10, "cached": 0, "total": prompt + 10}
        return expr.evaluate(lambda root, name: tokens[name] if root == "tokens" else "gemini-2.5-pro")

    assert (over(200_000), over(200_001)) == (False, True)
    assert (price.rates.input, tier.input, tier.output) == (1.25, 2.50, 15.00)


def test_the_readme_limits_snippet_passes_check(tmp_path: Path) -> None:
    """The README's every-limit snippet, next to the default bundle, is a valid bundle."""
    import re
    import shutil

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("Every limit in one snippet"):]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    for f in (Path(__file__).parent.parent / "policies").glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "limits.toml").write_text(match.group(1))  # as pasted: it starts with schema = 1
    snap = load_snapshot(tmp_path)
    assert any(k.id == "team-a" for k in snap.keys_by_hash.values())
