"""Anthropic Messages API on the wire, as typed Structs: request, answer, stream events, and
its usage normalised to `TokenUsage` (Anthropic's `input_tokens` excludes cache reads and
writes; they are added back so that prompt_tokens counts every input token)."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage


class _S(msgspec.Struct, omit_defaults=True):
    pass


class Source(_S):
    type: str  # base64 | url | text | content (documents) | file (Files API)
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    content: str | list[Block] | None = None
    file_id: str | None = None


class Block(_S):
    type: str  # text | image | tool_use | tool_result | thinking | redacted_thinking | document
    text: str | None = None
    source: Source | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    cache_control: dict[str, Any] | None = None
    title: str | None = None  # documents


class AMessage(_S):
    role: str
    content: str | list[Block]


class ATool(_S):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class AToolChoice(_S):
    type: str  # auto | any | tool | none
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ARequest(_S):
    model: str
    messages: list[AMessage]
    max_tokens: int | None = None
    system: str | list[Block] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[ATool] | None = None
    tool_choice: AToolChoice | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class AUsage(_S):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AResponse(msgspec.Struct):
    id: str
    model: str
    content: list[Block]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: AUsage = msgspec.field(default_factory=AUsage)
    type: str = "message"
    role: str = "assistant"


class ADelta(_S):
    type: str | None = None  # text_delta | input_json_delta | thinking_delta | signature_delta
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class AEvent(_S):
    type: str
    message: AResponse | None = None
    index: int | None = None
    content_block: Block | None = None
    delta: ADelta | None = None
    usage: AUsage | None = None
    error: dict[str, Any] | None = None


def token_usage(u: AUsage) -> TokenUsage:
    reads, writes = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    return TokenUsage(
        prompt_tokens=(u.input_tokens or 0) + reads + writes,
        completion_tokens=u.output_tokens or 0,
        cached_tokens=reads,
        cache_write_tokens=writes,
    )


def merge_usage(old: AUsage | None, new: AUsage) -> AUsage:
    """message_delta carries cumulative counts; fields it leaves out keep message_start's."""
    if old is None:
        return new
    return AUsage(
        input_tokens=new.input_tokens if new.input_tokens is not None else old.input_tokens,
        output_tokens=new.output_tokens if new.output_tokens is not None else old.output_tokens,
        cache_creation_input_tokens=new.cache_creation_input_tokens
        if new.cache_creation_input_tokens is not None
        else old.cache_creation_input_tokens,
        cache_read_input_tokens=new.cache_read_input_tokens
        if new.cache_read_input_tokens is not None
        else old.cache_read_input_tokens,
    )


def anthropic_usage(u: TokenUsage) -> AUsage:
    """The reverse, for answers sent to Anthropic clients."""
    return AUsage(
        input_tokens=u.prompt_tokens - u.cached_tokens - u.cache_write_tokens,
        output_tokens=u.completion_tokens,
        cache_read_input_tokens=u.cached_tokens,
        cache_creation_input_tokens=u.cache_write_tokens,
    )


request_decoder = msgspec.json.Decoder(ARequest)
response_decoder = msgspec.json.Decoder(AResponse)
event_decoder = msgspec.json.Decoder(AEvent)
encoder = msgspec.json.Encoder()
