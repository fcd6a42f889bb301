"""Adapter per provider kind. Kinds served by the other issues' adapters (anthropic, gemini,
midjourney) are registered here as they land."""

from __future__ import annotations

from ..errors import UpstreamError
from .anthropic_adapter import AnthropicAdapter
from .base import Adapter
from .gemini_adapter import GeminiAdapter
from .midjourney import MidjourneyAdapter
from .mock import MockAdapter
from .openai import AzureAdapter, OpenAIAdapter

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "openai-compatible": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "mock": MockAdapter(),
    "midjourney": MidjourneyAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        raise UpstreamError(
            f'provider kind "{kind}" cannot serve this endpoint yet', code="unsupported_provider"
        )
    return adapter
