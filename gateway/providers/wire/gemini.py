"""Gemini generateContent on the wire (camelCase JSON), as typed Structs: request, answer (a
whole answer and each `alt=sse` chunk share one shape), and usage normalised to `TokenUsage`
(promptTokenCount includes cached tokens; thoughts are billed as output)."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage


class _S(msgspec.Struct, omit_defaults=True):
    pass


# Gemini's REST API (proto3 JSON) takes field names in camelCase or as declared, and bytes in
# standard or URL-safe base64; google-genai sends `mime_type` and `file_uri` inside inlineData and
# fileData, and URL-safe base64. Both are read; camelCase and standard base64 (which the other
# families require) are sent.
_URL_SAFE = str.maketrans("-_", "+/")


class Blob(_S):
    mimeType: str = ""
    data: str = ""
    mime_type: str | None = None

    def __post_init__(self) -> None:
        self.mimeType, self.mime_type = self.mimeType or self.mime_type or "", None
        if "-" in self.data or "_" in self.data:
            self.data = self.data.translate(_URL_SAFE)
            self.data += "=" * (-len(self.data) % 4)


class FileData(_S):
    fileUri: str = ""
    mimeType: str | None = None
    file_uri: str | None = None
    mime_type: str | None = None

    def __post_init__(self) -> None:
        self.fileUri, self.file_uri = self.fileUri or self.file_uri or "", None
        self.mimeType, self.mime_type = self.mimeType or self.mime_type, None


class FunctionCall(_S):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponse(_S):
    name: str
    response: dict[str, Any]
    id: str | None = None


class Part(_S):
    text: str | None = None
    thought: bool | None = None
    thoughtSignature: str | None = None
    inlineData: Blob | None = None
    fileData: FileData | None = None
    functionCall: FunctionCall | None = None
    functionResponse: FunctionResponse | None = None
    executableCode: Any = None  # code execution: known, not translated
    codeExecutionResult: Any = None


class Content(_S):
    parts: list[Part] = []
    role: str | None = None


class FunctionDeclaration(_S):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parametersJsonSchema: dict[str, Any] | None = None


class GTool(_S):
    functionDeclarations: list[FunctionDeclaration] | None = None


class FunctionCallingConfig(_S):
    mode: str | None = None  # AUTO | ANY | NONE
    allowedFunctionNames: list[str] | None = None


class ToolConfig(_S):
    functionCallingConfig: FunctionCallingConfig | None = None


class GenerationConfig(_S):
    temperature: float | None = None
    topP: float | None = None
    topK: float | None = None
    maxOutputTokens: int | None = None
    stopSequences: list[str] | None = None
    candidateCount: int | None = None
    responseMimeType: str | None = None
    responseSchema: dict[str, Any] | None = None
    responseJsonSchema: dict[str, Any] | None = None
    seed: int | None = None
    presencePenalty: float | None = None
    frequencyPenalty: float | None = None
    thinkingConfig: dict[str, Any] | None = None


class GRequest(_S):
    contents: list[Content] = []
    systemInstruction: Content | None = None
    tools: list[GTool] | None = None
    toolConfig: ToolConfig | None = None
    generationConfig: GenerationConfig | None = None
    safetySettings: list[dict[str, Any]] | None = None


class Candidate(_S):
    content: Content | None = None
    finishReason: str | None = None
    index: int | None = None


class UsageMetadata(_S):
    promptTokenCount: int | None = None
    candidatesTokenCount: int | None = None
    cachedContentTokenCount: int | None = None
    thoughtsTokenCount: int | None = None
    toolUsePromptTokenCount: int | None = None
    totalTokenCount: int | None = None


class GResponse(_S):
    candidates: list[Candidate] | None = None
    usageMetadata: UsageMetadata | None = None
    modelVersion: str | None = None
    responseId: str | None = None
    promptFeedback: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # an error reported inside a stream


# A Gemini function call's thought signature rides in the tool call id other API families see,
# so it comes back with the call in the next turn (Gemini 3 refuses a call without it). Only
# [A-Za-z0-9_-] are used: Anthropic tool_use ids must match ^[a-zA-Z0-9_-]+$.
SIGNATURE_MARK = "_tsig_"


def call_id(base: str, signature: str | None) -> str:
    if not signature:
        return base
    return base + SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def split_call_id(value: str) -> tuple[str, str | None]:
    """(the id without the signature, the signature in standard base64, or None)."""
    base, mark, sig = value.partition(SIGNATURE_MARK)
    if not mark or not sig:
        return value, None
    sig = sig.replace("-", "+").replace("_", "/")
    return base, sig + "=" * (-len(sig) % 4)


def token_usage(u: UsageMetadata) -> TokenUsage:
    """Tool-use prompt tokens (e.g. search results fed to the model) are billed as input and are
    not in promptTokenCount; thoughts are billed as output."""
    thoughts = u.thoughtsTokenCount or 0
    return TokenUsage(
        prompt_tokens=(u.promptTokenCount or 0) + (u.toolUsePromptTokenCount or 0),
        completion_tokens=(u.candidatesTokenCount or 0) + thoughts,
        cached_tokens=u.cachedContentTokenCount or 0,
        reasoning_tokens=thoughts,
    )


def gemini_usage(u: TokenUsage) -> UsageMetadata:
    """The reverse, for answers sent to Gemini clients."""
    return UsageMetadata(
        promptTokenCount=u.prompt_tokens,
        candidatesTokenCount=u.completion_tokens - u.reasoning_tokens,
        cachedContentTokenCount=u.cached_tokens or None,
        thoughtsTokenCount=u.reasoning_tokens or None,
        totalTokenCount=u.prompt_tokens + u.completion_tokens,
    )


request_decoder = msgspec.json.Decoder(GRequest)
response_decoder = msgspec.json.Decoder(GResponse)
encoder = msgspec.json.Encoder()
