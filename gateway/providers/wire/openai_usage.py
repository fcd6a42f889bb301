"""Usage as OpenAI-family APIs report it, normalised to `TokenUsage`.

Chat/completions/embeddings report `prompt_tokens` (cache reads included, in
`prompt_tokens_details.cached_tokens`); the Responses API reports `input_tokens` /
`output_tokens`. Images count generated items.
"""

from __future__ import annotations

import msgspec

from ...core.usage import TokenUsage


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


class _Doc(msgspec.Struct):
    usage: _Usage | None = None
    data: list[msgspec.Raw] | None = None
    object: str | None = None


_doc = msgspec.json.Decoder(_Doc)


def normalise(u: _Usage) -> TokenUsage:
    prompt = u.prompt_tokens if u.prompt_tokens is not None else (u.input_tokens or 0)
    completion = u.completion_tokens if u.completion_tokens is not None else (u.output_tokens or 0)
    pd = u.prompt_tokens_details or u.input_tokens_details
    cd = u.completion_tokens_details or u.output_tokens_details
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=(pd.cached_tokens or 0) if pd else 0,
        cache_write_tokens=(pd.cache_write_tokens or 0) if pd else 0,
        reasoning_tokens=(cd.reasoning_tokens or 0) if cd else 0,
    )


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
