"""OpenAI chat completions on the wire, as typed Structs: the request (decoded from OpenAI
clients, encoded for OpenAI upstreams), the whole answer and the stream chunk. The translators
use these as the common vocabulary between API families."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage
from .openai_usage import cached_tokens


class _S(msgspec.Struct, omit_defaults=True):
    pass


class ImageUrl(_S):
    url: str
    detail: str | None = None


class FileRef(_S):
    """A `file` part's file: a PDF inline as a data: URL, or an OpenAI Files API id. (Inside
    the gateway, between two other families, file_data may also hold a document's URL.)"""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class ContentPart(_S):
    type: str  # text | image_url | file | input_audio
    text: str | None = None
    image_url: ImageUrl | None = None
    file: FileRef | None = None


class FunctionCall(_S):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_S):
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None
    index: int | None = None  # stream deltas only


class Message(_S):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionDef(_S):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(msgspec.Struct):  # `type` always on the wire: OpenAI requires it
    function: FunctionDef
    type: str = "function"


class StreamOptions(_S):
    include_usage: bool | None = None


class ChatRequest(_S):
    model: str = ""
    messages: list[Message] = []
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    reasoning_effort: str | None = None

    @property
    def stop_list(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class PromptDetails(_S):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class CompletionDetails(_S):
    reasoning_tokens: int | None = None


class ChatUsage(_S):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's name for cache reads


class Choice(msgspec.Struct):  # every field on the wire, defaults included
    index: int = 0
    message: Message | None = None
    delta: Message | None = None
    finish_reason: str | None = None


class Delta(_S):  # a stream delta: role is optional there
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None


class ChunkChoice(msgspec.Struct):  # every field on the wire, defaults included
    delta: Delta
    index: int = 0
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct):  # every field on the wire, defaults included
    choices: list[Choice]
    model: str = ""
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    usage: ChatUsage | None = None


class ChatChunk(msgspec.Struct):  # every field on the wire, defaults included
    choices: list[ChunkChoice]
    model: str = ""
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    usage: ChatUsage | None = None


def chat_usage(u: TokenUsage) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details=PromptDetails(
            cached_tokens=u.cached_tokens, cache_write_tokens=u.cache_write_tokens or None
        ),
        completion_tokens_details=CompletionDetails(reasoning_tokens=u.reasoning_tokens)
        if u.reasoning_tokens
        else None,
    )


def token_usage(u: ChatUsage) -> TokenUsage:
    pd, cd = u.prompt_tokens_details, u.completion_tokens_details
    return TokenUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=cached_tokens(pd.cached_tokens if pd else None, u.prompt_cache_hit_tokens),
        cache_write_tokens=(pd.cache_write_tokens or 0) if pd else 0,
        reasoning_tokens=(cd.reasoning_tokens or 0) if cd else 0,
    )


def text_of(content: str | list[ContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.text or "" for p in content if p.type == "text")


def arguments_object(arguments: str | None) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON string) as the object other families send; {} when
    they are not a JSON object."""
    try:
        value = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL, else None."""
    if not url.startswith("data:"):
        return None
    meta, _, data = url[5:].partition(",")
    return meta.split(";")[0] or "application/octet-stream", data


class _StreamError(msgspec.Struct):
    error: dict[str, Any]


_stream_error = msgspec.json.Decoder(_StreamError)


def error_kind(error: dict[str, Any] | None) -> str:
    """The usage row's `error_type` for an error an upstream reported inside its stream."""
    kind = (error or {}).get("type") or (error or {}).get("status") or (error or {}).get("code")
    return f"upstream_stream_error:{kind}" if kind else "upstream_stream_error"


def stream_error(data: bytes) -> dict[str, Any] | None:
    """The `error` object of an error event in a chat stream (`{"error": {...}}`), else None."""
    if b'"error"' not in data:
        return None
    try:
        return _stream_error.decode(data).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


request_decoder = msgspec.json.Decoder(ChatRequest)
completion_decoder = msgspec.json.Decoder(ChatCompletion)
chunk_decoder = msgspec.json.Decoder(ChatChunk)
encoder = msgspec.json.Encoder()
