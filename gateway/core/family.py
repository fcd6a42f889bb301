"""The API families: the request/answer formats a client speaks and an upstream serves.

A client's family is fixed by the endpoint it calls (`/v1/chat/completions` is OpenAI's,
`/v1/messages` Anthropic's, `/v1beta/models/...` Gemini's, `/mj/...` Midjourney's); an
upstream's by its provider kind. The codec table (gateway/providers/codecs.py) is keyed by the
pair of families.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

Family = Literal["openai", "anthropic", "gemini", "midjourney", "bedrock"]  # bedrock: upstreams only
FAMILIES: tuple[Family, ...] = get_args(Family)

# provider kind (gateway/config/types.py) -> the API family it speaks
FAMILY_OF_KIND: dict[str, Family] = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure": "openai",
    "mock": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "midjourney": "midjourney",
    "bedrock": "bedrock",  # AWS Bedrock's Converse API, whatever the model's vendor
    "vertex": "gemini",  # Vertex AI, publisher google
    "vertex-anthropic": "anthropic",  # Vertex AI, publisher anthropic (config: kind "vertex")
}


def family_of(provider_kind: str) -> str:
    """The family a provider kind speaks; an unknown kind stands for itself (and has no codec)."""
    return FAMILY_OF_KIND.get(provider_kind, provider_kind)


def is_family(name: str) -> TypeGuard[Family]:
    return name in FAMILIES
