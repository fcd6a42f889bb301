"""Usage as OpenAI-family APIs report it, normalised to `TokenUsage`.

Chat/completions/embeddings report `prompt_tokens` (cache reads included, in
`prompt_tokens_details.cached_tokens`); the Responses API reports `input_tokens` /
`output_tokens`. Images count generated items. DeepSeek reports cache reads as
`prompt_cache_hit_tokens` (read as cached_tokens).
"""

from __future__ import annotations

import msgspec

from ...core.usage import TokenUsage
from .openai_usage_types import _Doc, _Usage, _VendorChunk

_doc = msgspec.json.Decoder(_Doc)


def normalise(u: _Usage) -> TokenUsage:
    prompt = u.prompt_tokens if u.prompt_tokens is not None else (u.input_tokens or 0)
    completion = u.completion_tokens if u.completion_tokens is not None else (u.output_tokens or 0)
    pd = u.prompt_tokens_details or u.input_tokens_details
    cd = u.completion_tokens_details or u.output_tokens_details
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached_tokens(pd.cached_tokens if pd else None,
                                    u.prompt_cache_hit_tokens or u.cached_tokens),
        cache_write_tokens=(pd.cache_write_tokens or 0) if pd else 0,
        reasoning_tokens=(cd.reasoning_tokens or 0) if cd else 0,
    )


def cached_tokens(details: int | None, cache_hit: int | None) -> int:
    """Cache reads: `prompt_tokens_details.cached_tokens`, else a vendor's own field (DeepSeek's
    `prompt_cache_hit_tokens`, whose `prompt_cache_miss_tokens` are the rest of prompt_tokens,
    billed at the input rate; Moonshot's top-level `cached_tokens`)."""
    return details if details is not None else (cache_hit or 0)


_vendor_chunk = msgspec.json.Decoder(_VendorChunk)


def vendor_stream_usage(data: bytes) -> TokenUsage | None:
    """A stream chunk's usage where some OpenAI-compatible servers put it instead of the chunk's
    `usage`: inside a choice (Moonshot) or in `x_groq` (Groq)."""
    try:
        chunk = _vendor_chunk.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if chunk.x_groq is not None and chunk.x_groq.usage is not None:
        return normalise(chunk.x_groq.usage)
    found = next((c.usage for c in chunk.choices or () if c.usage is not None), None)
    return normalise(found) if found is not None else None


def usage_from_body(body: bytes, endpoint: str) -> TokenUsage | None:
    try:
        doc = _doc.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    usage = normalise(doc.usage) if doc.usage is not None else None
    if endpoint == "images/generations":
        usage = usage or TokenUsage()
        usage.images = len(doc.data or [])
    return usage
