"""Token counts of one request, as every provider module reports them and billing prices them.

Token convention (normalised by each provider's codec, so pricing has one rule):
`prompt_tokens` counts *all* input tokens, cache reads and cache writes included (OpenAI's
convention; Anthropic's `input_tokens` excludes them and its codec adds them back);
`completion_tokens` counts all output tokens, reasoning included. The usage row that stores
them is `gateway/usage/record.py`'s `UsageRecord`.
"""

from __future__ import annotations

import msgspec


class TokenUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # cache reads, part of prompt_tokens
    cache_write_tokens: int = 0  # cache writes, part of prompt_tokens
    reasoning_tokens: int = 0  # part of completion_tokens
    audio_prompt_tokens: int = 0  # audio input not read from cache, part of prompt_tokens
    audio_completion_tokens: int = 0  # audio output, part of completion_tokens
    images: int = 0
    audio_seconds: float = 0.0
    source: str = "upstream"  # upstream | estimated | none
