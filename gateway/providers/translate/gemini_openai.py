"""Gemini generateContent client -> OpenAI chat upstream: the request translated to a chat
completion request (stream usage always asked for), the answer and the stream translated back
to GenerateContentResponse objects (`alt=sse` chunks when streaming)."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import gemini as gw
from ..wire.openai_chat import (
    ChatChunk,
    ChatRequest,
    ContentPart,
    FunctionCall,
    FunctionDef,
    ImageUrl,
    Message,
    StreamOptions,
    Tool,
    ToolCall,
    arguments_object,
    completion_decoder,
    encoder,
    error_kind,
    token_usage,
)
from ..wire.parts import check_gemini_part
from ..wire.sse import frame
from . import documents, reasoning
from .codec import Outgoing, StreamTap
from .tap import ChatInTap

FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "function_call": "STOP",
          "content_filter": "SAFETY"}


def json_schema(schema: Any) -> Any:
    """Gemini schemas may spell types in capitals (OBJECT, STRING); JSON Schema wants lower case."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else json_schema(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [json_schema(v) for v in schema]
    return schema


def _user_parts(parts: list[gw.Part], messages: list[Message], pending: dict[str, list[str]],
                where: str, file_urls: bool) -> None:
    content: list[ContentPart] = []
    for i, p in enumerate(parts):
        check_gemini_part(p, f"{where}[{i}]")
        if p.functionResponse is not None:
            fr = p.functionResponse
            queue = pending.get(fr.name) or []
            call_id = fr.id or (queue.pop(0) if queue else f"call_{fr.name}")
            messages.append(Message(role="tool", tool_call_id=call_id,
                                    content=encoder.encode(fr.response).decode()))
        elif p.text:
            content.append(ContentPart(type="text", text=p.text))
        elif p.inlineData is not None:
            doc = documents.from_gemini_blob(p.inlineData, f"{where}[{i}]")
            url = f"data:{p.inlineData.mimeType};base64,{p.inlineData.data}"
            content.append(doc or ContentPart(type="image_url", image_url=ImageUrl(url=url)))
        elif p.fileData is not None:
            doc = documents.from_gemini_file(p.fileData, f"{where}[{i}]", file_urls)
            content.append(doc or ContentPart(type="image_url", image_url=ImageUrl(url=p.fileData.fileUri)))
    if content:
        single = len(content) == 1 and content[0].type == "text"
        messages.append(Message(role="user", content=content[0].text if single else content))


def _model_parts(parts: list[gw.Part], messages: list[Message], pending: dict[str, list[str]]) -> None:
    text = "".join(p.text or "" for p in parts if p.text and not p.thought)
    calls: list[ToolCall] = []
    for p in parts:
        if p.functionCall is not None:
            fc = p.functionCall
            call_id = fc.id or f"call_{len(messages)}_{len(calls)}"
            pending.setdefault(fc.name, []).append(call_id)
            fn = FunctionCall(name=fc.name, arguments=encoder.encode(fc.args or {}).decode())
            calls.append(ToolCall(id=call_id, type="function", function=fn))
    messages.append(Message(role="assistant", content=text or None, tool_calls=calls or None))


def _tool_choice(config: gw.ToolConfig | None) -> str | dict[str, Any] | None:
    fc = config.functionCallingConfig if config else None
    if fc is None or fc.mode is None:
        return None
    if fc.mode == "ANY" and fc.allowedFunctionNames and len(fc.allowedFunctionNames) == 1:
        return {"type": "function", "function": {"name": fc.allowedFunctionNames[0]}}
    return {"AUTO": "auto", "ANY": "required", "NONE": "none"}.get(fc.mode)


def to_chat(req: gw.GRequest, model: str, stream: bool, file_urls: bool = False) -> ChatRequest:
    """`file_urls`: whether PDF URLs (fileData) may travel in chat file parts (only on the
    internal hop to Anthropic, see documents.py); else such a part is a 400."""
    messages: list[Message] = []
    if req.systemInstruction is not None:
        system = "".join(p.text or "" for p in req.systemInstruction.parts)
        messages.append(Message(role="system", content=system))
    pending: dict[str, list[str]] = {}  # function name -> call ids not yet answered
    for n, content in enumerate(req.contents):
        if content.role == "model":
            _model_parts(content.parts, messages, pending)
        else:
            _user_parts(content.parts, messages, pending, f"contents[{n}].parts", file_urls)
    tools = [Tool(function=FunctionDef(name=d.name, description=d.description,
                                       parameters=json_schema(d.parametersJsonSchema or d.parameters)))
             for t in req.tools or () for d in t.functionDeclarations or ()]
    g = req.generationConfig or gw.GenerationConfig()
    fmt: dict[str, Any] | None = None
    schema = g.responseJsonSchema or g.responseSchema
    if schema:
        fmt = {"type": "json_schema", "json_schema": {"name": "response", "schema": json_schema(schema)}}
    elif g.responseMimeType == "application/json":
        fmt = {"type": "json_object"}
    return ChatRequest(
        model=model, messages=messages, max_tokens=g.maxOutputTokens, temperature=g.temperature,
        top_p=g.topP, n=g.candidateCount, stop=g.stopSequences, seed=g.seed,
        presence_penalty=g.presencePenalty, frequency_penalty=g.frequencyPenalty,
        tools=tools or None, tool_choice=_tool_choice(req.toolConfig) if tools else None,
        response_format=fmt, stream=True if stream else None,
        reasoning_effort=reasoning.effort_from_gemini(g.thinkingConfig),
        stream_options=StreamOptions(include_usage=True) if stream else None,
    )


def _parts(text: str | None, calls: list[ToolCall], thought: str | None = None) -> list[gw.Part]:
    parts = [gw.Part(text=thought, thought=True)] if thought else []
    if text:
        parts.append(gw.Part(text=text))
    for call in calls:
        fn = call.function or FunctionCall()
        call_doc = gw.FunctionCall(name=fn.name or "", args=arguments_object(fn.arguments))
        parts.append(gw.Part(functionCall=call_doc))
    return parts


def from_chat(body: bytes) -> tuple[gw.GResponse, TokenUsage | None]:
    chat = completion_decoder.decode(body)
    candidates = []
    for choice in chat.choices:
        m = choice.message or Message(role="assistant")
        text = m.content if isinstance(m.content, str) else None
        content = gw.Content(role="model", parts=_parts(text, m.tool_calls or [], m.reasoning_content))
        candidates.append(gw.Candidate(content=content, index=choice.index,
                                       finishReason=FINISH.get(choice.finish_reason or "", "STOP")))
    usage = token_usage(chat.usage) if chat.usage else None
    return gw.GResponse(candidates=candidates, usageMetadata=gw.gemini_usage(usage) if usage else None,
                        modelVersion=chat.model, responseId=chat.id), usage


class ChatToGeminiTap(ChatInTap):
    """chat.completion.chunk events in, Gemini `alt=sse` chunks out. Text and reasoning (as thought
    parts) go out as they come; a function call goes out whole, as Gemini sends it, as soon as it is
    complete (the next call starts) or with the finish reason and usage."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model, self._id = model, ""
        self._calls: dict[int, ToolCall] = {}  # stream index -> the call's name and arguments so far
        self._released: set[int] = set()
        self._finish: str | None = None

    def _send(self, candidate: gw.Candidate | None, usage: gw.UsageMetadata | None = None) -> bytes:
        doc = gw.GResponse(candidates=[candidate] if candidate else None, usageMetadata=usage,
                           modelVersion=self._model, responseId=self._id or None)
        return frame(gw.encoder.encode(doc))

    def _on_chunk(self, chunk: ChatChunk) -> bytes:
        self._id, self._model = chunk.id or self._id, chunk.model or self._model
        if chunk.usage is not None:
            self.usage = token_usage(chunk.usage)
        out = b""
        for choice in chunk.choices[:1]:
            d = choice.delta
            parts: list[gw.Part] = []
            for call in d.tool_calls or ():
                fn, index = call.function or FunctionCall(), call.index or 0
                if index not in self._calls:  # a new call: the ones before it are complete
                    parts += self._release()
                    self._calls[index] = ToolCall(function=FunctionCall(name=fn.name, arguments=""))
                held = self._calls[index].function
                assert held is not None
                held.name = held.name or fn.name
                held.arguments = (held.arguments or "") + (fn.arguments or "")
                self.chars += len(fn.arguments or "")
            if d.reasoning_content:
                self.chars += len(d.reasoning_content)
                parts.append(gw.Part(text=d.reasoning_content, thought=True))
            if d.content:
                self.chars += len(d.content)
                parts.append(gw.Part(text=d.content))
            if parts:
                out += self._send(gw.Candidate(content=gw.Content(role="model", parts=parts), index=0))
            if choice.finish_reason:
                self._finish = FINISH.get(choice.finish_reason, "STOP")
        return out

    def _error(self, error: dict[str, Any] | None) -> bytes:
        """An upstream error mid-stream ends the stream with an error object, as Gemini does."""
        if error is None or self._done:
            return b""
        self.error = error_kind(error)
        self._done = True
        overloaded = error.get("type") == "overloaded_error"
        doc = {"error": {"code": 503 if overloaded else 500,
                         "message": str(error.get("message") or "the upstream stream failed"),
                         "status": "UNAVAILABLE" if overloaded else "INTERNAL"}}
        return frame(gw.encoder.encode(doc))

    def _release(self) -> list[gw.Part]:
        """The held calls as parts (Gemini sends a call whole, with its arguments as an object)."""
        calls = [c for i, c in sorted(self._calls.items()) if i not in self._released]
        self._released.update(self._calls)
        return _parts(None, calls)

    def _end(self) -> bytes:
        self._done = True
        parts = self._release() or [gw.Part(text="")]  # as Gemini ends a stream: never without parts
        candidate = gw.Candidate(content=gw.Content(role="model", parts=parts),
                                 finishReason=self._finish or "STOP", index=0)
        return self._send(candidate, gw.gemini_usage(self.usage) if self.usage else None)


class GeminiToOpenAI:
    def __init__(self, file_urls: bool = False) -> None:
        self.file_urls = file_urls  # True only as the first half of Gemini -> chat -> Anthropic

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        try:
            req = gw.request_decoder.decode(out.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"invalid generateContent request: {exc}") from None
        chat = to_chat(req, out.upstream_model, out.stream, self.file_urls)
        return "chat/completions", encoder.encode(chat)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp, usage = from_chat(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the upstream sent an unreadable chat completion: {exc}") from None
        return gw.encoder.encode(resp), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return ChatToGeminiTap(out.upstream_model)
