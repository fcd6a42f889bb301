"""The usage fields of OpenAI-family answers, as msgspec Structs (read by openai_usage.py, kept
apart so that its functions can be compiled: gateway/compiled.py)."""

from __future__ import annotations

import msgspec


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    input_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    output_tokens_details: _CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's name for cache reads
    cached_tokens: int | None = None  # Moonshot's: at the top of its usage


class _Doc(msgspec.Struct):
    usage: _Usage | None = None
    data: list[msgspec.Raw] | None = None
    object: str | None = None


class _UsageOnly(msgspec.Struct):
    """An object of which only its `usage` is read: a vendor's stream choice (Moonshot), Groq's
    `x_groq`, a Responses API event's `response`."""

    usage: _Usage | None = None


class _VendorChunk(msgspec.Struct):
    choices: list[_UsageOnly] | None = None
    x_groq: _UsageOnly | None = None
