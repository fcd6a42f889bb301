"""Reasoning controls across API families: OpenAI's `reasoning_effort` (and the Responses API's
`reasoning.effort`), Anthropic's `thinking` {type, budget_tokens} and Gemini's
`generationConfig.thinkingConfig` {thinkingBudget | thinkingLevel}, mapped through one table.

| effort  | budget tokens (Anthropic budget_tokens, Gemini thinkingBudget) |
|---------|----------------------------------------------------------------|
| none    | Anthropic thinking disabled; Gemini thinkingBudget 0           |
| minimal | 1024 (Anthropic's smallest budget)                             |
| low     | 2048                                                           |
| medium  | 8192                                                           |
| high    | 24576                                                          |

Back from a budget: >= 16384 high, >= 4096 medium, > 0 low (so low, medium and high survive a
round trip; minimal comes back as low, which every OpenAI reasoning model takes); Gemini's
dynamic budget (-1) is medium; a disabled budget (0) sets no effort (the upstream's default).

Anthropic needs `max_tokens` above the budget (it caps thinking and answer together): when the
client's cap is not above it, the budget is added to it, so the answer keeps the room the client
asked for. With thinking on, Anthropic refuses a changed temperature or top_k: they are dropped.
The translators call these functions; the relay applies an alias's default (`reasoning =
"high"`) with `apply_default` on the upstream body, only when the client set none.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
EFFORTS = frozenset({"none", *BUDGETS})
GEMINI_ENDPOINTS = frozenset({"generateContent", "streamGenerateContent"})


def effort_for_budget(budget: int | None) -> str | None:
    if budget is None or budget == 0:
        return None
    if budget < 0:
        return "medium"  # Gemini's dynamic thinking: the model decides
    if budget >= 16384:
        return "high"
    return "medium" if budget >= 4096 else "low"


def anthropic_thinking(effort: str | None, max_tokens: int) -> tuple[dict[str, Any] | None, int]:
    """(Anthropic `thinking`, the max_tokens to send) for an OpenAI effort; (None, max) for none set."""
    if effort is None or effort not in EFFORTS:
        return None, max_tokens
    if effort == "none":
        return {"type": "disabled"}, max_tokens
    budget = BUDGETS[effort]
    if max_tokens <= budget:
        max_tokens += budget
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def effort_from_anthropic(thinking: dict[str, Any] | None) -> str | None:
    if not thinking:
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        return effort_for_budget(budget if isinstance(budget, int) else None) or "medium"
    if kind == "adaptive":
        return "medium"
    return None


def gemini_thinking(effort: str | None) -> dict[str, Any] | None:
    """Gemini's `thinkingConfig` for an OpenAI effort (thoughts included, as reasoning asked for)."""
    if effort is None or effort not in EFFORTS:
        return None
    if effort == "none":
        return {"thinkingBudget": 0}
    return {"thinkingBudget": BUDGETS[effort], "includeThoughts": True}


def effort_from_gemini(config: dict[str, Any] | None) -> str | None:
    if not config:
        return None
    # proto3 JSON: either spelling (google-genai sends the snake_case one)
    level = config.get("thinkingLevel", config.get("thinking_level"))
    if isinstance(level, str) and level.lower() in EFFORTS:
        return level.lower()
    budget = config.get("thinkingBudget", config.get("thinking_budget"))
    return effort_for_budget(budget) if isinstance(budget, int) else None


def apply_default(doc: MutableMapping[str, Any], family: str, endpoint: str, effort: str) -> None:
    """An alias's reasoning effort, on an upstream body (already translated) that sets none."""
    if family == "openai":
        if endpoint == "chat/completions" and "reasoning_effort" not in doc:
            doc["reasoning_effort"] = effort
        elif endpoint == "responses" and "reasoning" not in doc:
            doc["reasoning"] = {"effort": effort}
    elif family == "anthropic" and endpoint == "messages" and "thinking" not in doc:
        cap = doc.get("max_tokens")
        thinking, doc["max_tokens"] = anthropic_thinking(effort, cap if isinstance(cap, int) else 4096)
        doc["thinking"] = thinking
        if thinking and thinking["type"] == "enabled":
            for name in ("temperature", "top_k"):
                doc.pop(name, None)
    elif family == "gemini" and endpoint in GEMINI_ENDPOINTS:
        config = doc.get("generationConfig")
        if not isinstance(config, dict):
            config = doc["generationConfig"] = {}
        if "thinkingConfig" not in config and "thinking_config" not in config:
            config["thinkingConfig"] = gemini_thinking(effort)
