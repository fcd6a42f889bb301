"""Importing this module registers every codec (client format x upstream family)."""

from __future__ import annotations

from . import (
    gemini_embeddings,
    openai_codec,
    passthrough_native,
    translate_anthropic_openai,
    translate_embeddings_gemini,
    translate_gemini_openai,
    translate_openai_anthropic,
    translate_openai_gemini,
    translate_responses,
    translate_via_chat,
)

__all__ = [
    "gemini_embeddings",
    "openai_codec",
    "passthrough_native",
    "translate_anthropic_openai",
    "translate_embeddings_gemini",
    "translate_gemini_openai",
    "translate_openai_anthropic",
    "translate_openai_gemini",
    "translate_responses",
    "translate_via_chat",
]
