"""AWS Bedrock's Converse API on the wire (camelCase JSON), as typed Structs: the request
(`POST /model/{modelId}/converse` and `/converse-stream`), the whole answer, the events of a
ConverseStream (each one event-stream message, `:event-type` naming it, its payload one of the
JSON shapes below), and usage normalised to `TokenUsage` (Bedrock's `inputTokens` excludes cache
reads and writes, like Anthropic's: they are added back so prompt_tokens counts every input token).

A content block is a union by key (`{"text": ...}`, `{"image": ...}`, `{"toolUse": ...}` ...):
one Struct with every key optional, exactly one set."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage


class _S(msgspec.Struct, omit_defaults=True):
    pass


class ImageSource(_S):
    bytes: str | None = None  # base64 on the JSON wire


class Image(_S):
    format: str  # png | jpeg | gif | webp
    source: ImageSource


class DocumentSource(_S):
    bytes: str | None = None


class Document(_S):
    format: str  # pdf | csv | doc | docx | xls | xlsx | html | txt | md
    name: str
    source: DocumentSource


class ToolUse(_S):
    toolUseId: str
    name: str
    input: Any = None


class ToolResultContent(_S):
    text: str | None = None
    json: Any = None
    image: Image | None = None


class ToolResult(_S):
    toolUseId: str
    content: list[ToolResultContent]
    status: str | None = None  # success | error


class ReasoningText(_S):
    text: str = ""
    signature: str | None = None


class ReasoningContent(_S):
    reasoningText: ReasoningText | None = None
    redactedContent: str | None = None


class Block(_S):
    text: str | None = None
    image: Image | None = None
    document: Document | None = None
    toolUse: ToolUse | None = None
    toolResult: ToolResult | None = None
    reasoningContent: ReasoningContent | None = None
    cachePoint: dict[str, Any] | None = None


class BMessage(_S):
    role: str  # user | assistant
    content: list[Block]


class SystemBlock(_S):
    text: str | None = None
    cachePoint: dict[str, Any] | None = None


class InferenceConfig(_S):
    maxTokens: int | None = None
    temperature: float | None = None
    topP: float | None = None
    stopSequences: list[str] | None = None


class ToolSpec(_S):
    name: str
    inputSchema: dict[str, Any]  # {"json": <JSON schema>}
    description: str | None = None


class BTool(_S):
    toolSpec: ToolSpec | None = None
    cachePoint: dict[str, Any] | None = None  # a tools entry may be a cache point instead


class ToolConfig(_S):
    tools: list[BTool]
    toolChoice: dict[str, Any] | None = None  # {"auto": {}} | {"any": {}} | {"tool": {"name": ...}}


class ConverseRequest(_S):
    messages: list[BMessage]
    system: list[SystemBlock] | None = None
    inferenceConfig: InferenceConfig | None = None
    toolConfig: ToolConfig | None = None
    additionalModelRequestFields: dict[str, Any] | None = None


class BUsage(_S):
    inputTokens: int = 0
    outputTokens: int = 0
    totalTokens: int = 0
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


class Output(_S):
    message: BMessage | None = None


class ConverseResponse(_S):
    output: Output
    stopReason: str = "end_turn"
    usage: BUsage | None = None


# ConverseStream events, by `:event-type` -------------------------------------------------------


class StartBlock(_S):
    toolUse: ToolUse | None = None


class DeltaToolUse(_S):
    input: str = ""  # partial JSON text


class DeltaReasoning(_S):
    text: str | None = None
    signature: str | None = None


class Delta(_S):
    text: str | None = None
    toolUse: DeltaToolUse | None = None
    reasoningContent: DeltaReasoning | None = None


class StreamEvent(_S):
    """The payload of any ConverseStream event (the union of their fields)."""

    role: str | None = None  # messageStart
    contentBlockIndex: int = 0  # contentBlockStart, contentBlockDelta, contentBlockStop
    start: StartBlock | None = None  # contentBlockStart
    delta: Delta | None = None  # contentBlockDelta
    stopReason: str | None = None  # messageStop
    usage: BUsage | None = None  # metadata
    message: str | None = None  # an exception's payload


def token_usage(u: BUsage | None) -> TokenUsage:
    if u is None:
        return TokenUsage()
    read, write = u.cacheReadInputTokens or 0, u.cacheWriteInputTokens or 0
    return TokenUsage(prompt_tokens=u.inputTokens + read + write, completion_tokens=u.outputTokens,
                      cached_tokens=read, cache_write_tokens=write)


request_decoder = msgspec.json.Decoder(ConverseRequest)
response_decoder = msgspec.json.Decoder(ConverseResponse)
event_decoder = msgspec.json.Decoder(StreamEvent)
encoder = msgspec.json.Encoder()
