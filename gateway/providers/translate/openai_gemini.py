"""OpenAI chat client -> Gemini generateContent upstream: the request translated (system
instruction, turns, images, function declarations, calls and responses, generation config),
the answer and the `alt=sse` stream translated back to chat.completion(.chunk)."""

from __future__ import annotations

import mimetypes
import secrets
import time
from typing import Any

import msgspec

from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import gemini as gw
from ..wire.openai_chat import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    Choice,
    ChunkChoice,
    ContentPart,
    Delta,
    FunctionCall,
    Message,
    ToolCall,
    chat_usage,
    encoder,
    error_kind,
    parse_data_url,
    text_of,
)
from ..wire.parts import OPENAI_PARTS, check_type
from ..wire.sse import frame
from . import documents, reasoning
from .codec import Outgoing, StreamTap
from .openai_anthropic import decode_chat
from .tap import ChatOutTap

FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
_UNSUPPORTED_SCHEMA_KEYS = frozenset({"$schema", "additionalProperties", "strict", "$id"})


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def clean_schema(schema: Any) -> Any:
    """Gemini's `parameters` take an OpenAPI subset: drop the JSON Schema keys it refuses."""
    if isinstance(schema, dict):
        return {k: clean_schema(v) for k, v in schema.items() if k not in _UNSUPPORTED_SCHEMA_KEYS}
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _media(url: str) -> gw.Part:
    data = parse_data_url(url)
    if data is not None:
        return gw.Part(inlineData=gw.Blob(mimeType=data[0], data=data[1]))
    mime = mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"
    return gw.Part(fileData=gw.FileData(fileUri=url, mimeType=mime))


def _parts(content: str | list[ContentPart] | None, where: str) -> list[gw.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [gw.Part(text=content)] if content else []
    out = []
    for i, part in enumerate(content):
        check_type(part.type, OPENAI_PARTS, f"{where}[{i}]")
        if part.type == "text" and part.text:
            out.append(gw.Part(text=part.text))
        elif part.type == "image_url" and part.image_url is not None:
            out.append(_media(part.image_url.url))
        elif part.type == "file":
            out.append(documents.to_gemini(part.file, f"{where}[{i}]"))
    return out


def _append(contents: list[gw.Content], role: str, parts: list[gw.Part]) -> None:
    if not parts:
        return
    if contents and contents[-1].role == role:
        contents[-1].parts.extend(parts)
    else:
        contents.append(gw.Content(role=role, parts=parts))


def _response_doc(text: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _tool_config(req: ChatRequest) -> gw.ToolConfig | None:
    tc = req.tool_choice
    if isinstance(tc, dict):
        name = (tc.get("function") or {}).get("name")
        config = gw.FunctionCallingConfig(mode="ANY", allowedFunctionNames=[name] if name else None)
    elif tc in ("auto", "required", "none"):
        config = gw.FunctionCallingConfig(mode={"auto": "AUTO", "required": "ANY", "none": "NONE"}[tc])
    else:
        return None
    return gw.ToolConfig(functionCallingConfig=config)


def _generation_config(req: ChatRequest) -> gw.GenerationConfig:
    config = gw.GenerationConfig(
        temperature=req.temperature, topP=req.top_p,
        maxOutputTokens=req.max_completion_tokens or req.max_tokens,
        stopSequences=req.stop_list, candidateCount=req.n, seed=req.seed,
        presencePenalty=req.presence_penalty, frequencyPenalty=req.frequency_penalty,
        thinkingConfig=reasoning.gemini_thinking(req.reasoning_effort))
    fmt = req.response_format or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config.responseMimeType = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config.responseJsonSchema = schema
    return config


def to_gemini(req: ChatRequest) -> gw.GRequest:
    system: list[gw.Part] = []
    contents: list[gw.Content] = []
    names: dict[str, str] = {}  # tool call id -> function name (tool results only carry the id)
    for n, m in enumerate(req.messages):
        where = f"messages[{n}].content"
        if m.role in ("system", "developer"):
            system.extend(_parts(m.content, where))
        elif m.role == "tool":
            name = names.get(m.tool_call_id or "", m.name or "")
            response = gw.FunctionResponse(name=name, response=_response_doc(text_of(m.content)))
            _append(contents, "user", [gw.Part(functionResponse=response)])
        elif m.role == "assistant":
            parts = _parts(m.content, where)
            for call in m.tool_calls or ():
                fn = call.function or FunctionCall()
                names[call.id or ""] = fn.name or ""
                args = msgspec.json.decode(fn.arguments or "{}") if fn.arguments else {}
                _, signature = gw.split_call_id(call.id or "")
                parts.append(gw.Part(functionCall=gw.FunctionCall(name=fn.name or "", args=args),
                                     thoughtSignature=signature))
            _append(contents, "model", parts)
        else:
            _append(contents, "user", _parts(m.content, where))
    declarations = [gw.FunctionDeclaration(name=t.function.name, description=t.function.description,
                                           parameters=clean_schema(t.function.parameters))
                    for t in req.tools or ()]
    return gw.GRequest(
        contents=contents,
        systemInstruction=gw.Content(parts=system) if system else None,
        tools=[gw.GTool(functionDeclarations=declarations)] if declarations else None,
        toolConfig=_tool_config(req),
        generationConfig=_generation_config(req),
    )


def _message(parts: list[gw.Part], first_call: int) -> tuple[Delta, int]:
    text = "".join(p.text or "" for p in parts if p.text and not p.thought)
    thought = "".join(p.text or "" for p in parts if p.text and p.thought)
    calls: list[ToolCall] = []
    for p in parts:
        if p.functionCall is not None:
            fc, n = p.functionCall, first_call + len(calls)
            fn = FunctionCall(name=fc.name, arguments=encoder.encode(fc.args or {}).decode())
            # unique: clients send a conversation's calls back together, and Anthropic refuses twins
            ident = gw.call_id(fc.id or f"call_{secrets.token_hex(8)}", p.thoughtSignature)
            calls.append(ToolCall(index=n, id=ident, type="function", function=fn))
    delta = Delta(content=text or None, reasoning_content=thought or None, tool_calls=calls or None)
    return delta, len(calls)


def from_gemini(resp: gw.GResponse, model: str) -> tuple[ChatCompletion, TokenUsage | None]:
    choices = []
    for i, cand in enumerate(resp.candidates or ()):
        delta, _ = _message(cand.content.parts if cand.content else [], 0)
        calls = [ToolCall(id=c.id, type=c.type, function=c.function) for c in delta.tool_calls or ()]
        message = Message(role="assistant", content=delta.content if delta.content or not calls else None,
                          tool_calls=calls or None, reasoning_content=delta.reasoning_content)
        if message.content is None and not calls:
            message.content = ""
        choices.append(Choice(index=cand.index if cand.index is not None else i, message=message,
                              finish_reason=finish_reason(cand.finishReason or "STOP", bool(calls))))
    if not choices:  # the prompt itself was blocked
        choices.append(Choice(index=0, message=Message(role="assistant", content=""),
                              finish_reason="content_filter"))
    usage = gw.token_usage(resp.usageMetadata) if resp.usageMetadata else None
    return ChatCompletion(id=resp.responseId or "chatcmpl-gemini", model=resp.modelVersion or model,
                          created=int(time.time()), choices=choices,
                          usage=chat_usage(usage) if usage else None), usage


class GeminiToChatTap(ChatOutTap):
    """Gemini `alt=sse` chunks in, chat.completion.chunk events out."""

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__("chatcmpl-gemini", model, include_usage)
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate -> tool calls so far

    def _event(self, data: bytes) -> bytes:
        try:
            resp = gw.response_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b""
        if resp.error is not None:  # the upstream gave up: the error, and nothing after it
            self._done = True
            self.error = error_kind(resp.error)
            return frame(encoder.encode({"error": resp.error}))
        self._id = resp.responseId or self._id
        self._model = resp.modelVersion or self._model
        if resp.usageMetadata is not None:
            self.usage = gw.token_usage(resp.usageMetadata)
        choices = []
        for i, cand in enumerate(resp.candidates or ()):
            index = cand.index if cand.index is not None else i
            delta, n = _message(cand.content.parts if cand.content else [], self._calls.get(index, 0))
            self._calls[index] = self._calls.get(index, 0) + n
            self.chars += len(delta.content or "") + len(delta.reasoning_content or "")
            self.chars += sum(len(c.function.arguments or "") for c in delta.tool_calls or () if c.function)
            if index not in self._started:
                self._started.add(index)
                delta.role = "assistant"
            finish = finish_reason(cand.finishReason, self._calls[index] > 0)
            choices.append(ChunkChoice(delta=delta, index=index, finish_reason=finish))
        if not choices:
            return b""
        doc = ChatChunk(id=self._id, model=self._model, created=self._created, choices=choices)
        return frame(encoder.encode(doc))


class OpenAIToGemini:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        if out.endpoint != "chat/completions":
            raise InvalidRequest(f"/v1/{out.endpoint} cannot be served by a Gemini provider",
                                 code="unsupported_endpoint")
        try:
            body = gw.encoder.encode(to_gemini(decode_chat(out.body)))
        except msgspec.DecodeError as exc:  # tool call arguments that are not JSON
            raise InvalidRequest(f"invalid tool call arguments: {exc}") from None
        return "generateContent", body

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp = gw.response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the Gemini upstream sent an unreadable answer: {exc}") from None
        chat, usage = from_gemini(resp, out.upstream_model)
        return encoder.encode(chat), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return GeminiToChatTap(out.upstream_model, out.client_wants_usage)
