"""The adapter of each provider kind (one module per kind in this folder). A new kind: its
adapter module here, its entry below, its family in gateway/core/family.py, and its codecs in
../codecs.py."""

from __future__ import annotations

from ...errors import UpstreamError
from .anthropic import AnthropicAdapter
from .base import Adapter
from .bedrock import BedrockAdapter
from .gemini import GeminiAdapter
from .midjourney import MidjourneyAdapter
from .mock import MockAdapter
from .openai import AzureAdapter, OpenAIAdapter
from .vertex import VertexAdapter

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "openai-compatible": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "mock": MockAdapter(),
    "midjourney": MidjourneyAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "bedrock": BedrockAdapter(),
    "vertex": VertexAdapter(),
    "vertex-anthropic": VertexAdapter(),  # a vertex provider with publisher "anthropic"
}


def adapter_for(kind: str) -> Adapter:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        raise UpstreamError(
            f'provider kind "{kind}" cannot serve this endpoint yet', code="unsupported_provider"
        )
    return adapter
