"""Anthropic Messages client -> OpenAI chat upstream: the request translated to a chat
completion request (stream usage always asked for), the answer and the stream translated back
to an Anthropic message and its events (message_start, content_block_*, message_delta,
message_stop), one event group per upstream chunk."""

from __future__ import annotations

from typing import Any

import msgspec

from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import anthropic as aw
from ..wire.openai_chat import (
    ChatChunk,
    ChatRequest,
    ContentPart,
    FunctionCall,
    FunctionDef,
    Message,
    StreamOptions,
    Tool,
    ToolCall,
    completion_decoder,
    encoder,
    error_kind,
    token_usage,
)
from ..wire.parts import ANTHROPIC_BLOCKS, check_type
from ..wire.sse import frame
from . import documents, reasoning
from .codec import Outgoing, StreamTap
from .tap import ChatInTap

ERROR_TYPES = frozenset({"invalid_request_error", "authentication_error", "permission_error",
                         "not_found_error", "request_too_large", "rate_limit_error", "api_error",
                         "overloaded_error", "billing_error", "timeout_error"})
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
        "function_call": "tool_use", "content_filter": "refusal"}


def _text(content: str | list[aw.Block] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(b.text or "" for b in content if b.type == "text")


def _user(blocks: list[aw.Block], messages: list[Message], where: str, file_urls: bool) -> None:
    parts: list[ContentPart] = []
    for i, b in enumerate(blocks):
        check_type(b.type, ANTHROPIC_BLOCKS, f"{where}[{i}]")
        if b.type == "tool_result":
            text = _text(b.content)
            messages.append(Message(role="tool", tool_call_id=b.tool_use_id or "",
                                    content=f"Error: {text}" if b.is_error else text))
        elif b.type == "text" and b.text:
            parts.append(ContentPart(type="text", text=b.text))
        elif b.type == "image":
            parts.append(documents.anthropic_image(b))
        elif b.type == "document":
            parts.extend(documents.from_anthropic(b, f"{where}[{i}]", file_urls))
    if parts:
        single = len(parts) == 1 and parts[0].type == "text"
        messages.append(Message(role="user", content=parts[0].text if single else parts))


def _assistant(blocks: list[aw.Block], messages: list[Message]) -> None:
    text = "".join(b.text or "" for b in blocks if b.type == "text")
    calls = [ToolCall(id=b.id, type="function",
                      function=FunctionCall(name=b.name, arguments=encoder.encode(b.input or {}).decode()))
             for b in blocks if b.type == "tool_use"]
    messages.append(Message(role="assistant", content=text or None, tool_calls=calls or None))


def _tool_choice(choice: aw.AToolChoice | None) -> tuple[str | dict[str, object] | None, bool | None]:
    if choice is None:
        return None, None
    parallel = False if choice.disable_parallel_tool_use else None
    if choice.type == "tool" and choice.name:
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}.get(choice.type), parallel


def to_chat(req: aw.ARequest, model: str, file_urls: bool = False) -> ChatRequest:
    """`file_urls`: whether document URLs may travel in chat file parts (only on the internal
    hop to Gemini, see documents.py); else such a document is a 400."""
    messages: list[Message] = []
    if req.system:
        messages.append(Message(role="system", content=_text(req.system)))
    for n, m in enumerate(req.messages):
        blocks = [aw.Block(type="text", text=m.content)] if isinstance(m.content, str) else m.content
        if m.role == "assistant":
            _assistant(blocks, messages)
        else:
            _user(blocks, messages, f"messages[{n}].content", file_urls)
    tools = [Tool(function=FunctionDef(name=t.name, description=t.description, parameters=t.input_schema))
             for t in req.tools or () if t.type in (None, "custom")]
    tool_choice, parallel = _tool_choice(req.tool_choice)
    user = (req.metadata or {}).get("user_id")
    return ChatRequest(
        model=model, messages=messages, max_tokens=req.max_tokens, temperature=req.temperature,
        top_p=req.top_p, stop=req.stop_sequences, tools=tools or None,
        tool_choice=tool_choice if tools else None, parallel_tool_calls=parallel if tools else None,
        user=str(user) if user else None, stream=True if req.stream else None,
        reasoning_effort=reasoning.effort_from_anthropic(req.thinking),
        stream_options=StreamOptions(include_usage=True) if req.stream else None,
    )


def _args(arguments: str | None) -> object:
    try:
        return msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        return {}


def from_chat(body: bytes) -> tuple[aw.AResponse, TokenUsage | None]:
    chat = completion_decoder.decode(body)
    message = chat.choices[0].message if chat.choices else None
    blocks: list[aw.Block] = []
    if message is not None:
        if message.reasoning_content:  # e.g. DeepSeek, vLLM reasoning parsers; no signature to give
            blocks.append(aw.Block(type="thinking", thinking=message.reasoning_content, signature=""))
        if isinstance(message.content, str) and message.content:
            blocks.append(aw.Block(type="text", text=message.content))
        for call in message.tool_calls or ():
            fn = call.function or FunctionCall()
            blocks.append(aw.Block(type="tool_use", id=call.id, name=fn.name, input=_args(fn.arguments)))
    usage = token_usage(chat.usage) if chat.usage else None
    reason = chat.choices[0].finish_reason if chat.choices else None
    resp = aw.AResponse(id=f"msg_{chat.id}", model=chat.model, content=blocks,
                        stop_reason=STOP.get(reason or "", "end_turn"),
                        usage=aw.anthropic_usage(usage or TokenUsage()))
    return resp, usage


def event(doc: aw.AEvent) -> bytes:
    return frame(aw.encoder.encode(doc), doc.type)


class ChatToAnthropicTap(ChatInTap):
    """chat.completion.chunk events in, Anthropic stream events out."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        self._started = False
        self._block = -1  # index of the open content block; -1 when none is open
        self._kind = ""  # "thinking", "text" or "tool:<n>" for the open block
        self._stop = "end_turn"

    def _open(self, kind: str, block: aw.Block) -> bytes:
        out = self._close()
        self._block, self._kind = self._block + 1, kind
        return out + event(aw.AEvent(type="content_block_start", index=self._block, content_block=block))

    def _close(self) -> bytes:
        if not self._kind:
            return b""
        self._kind = ""
        return event(aw.AEvent(type="content_block_stop", index=self._block))

    def _on_chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        if not self._started:
            self._started = True
            start = aw.AResponse(id=f"msg_{chunk.id}", model=chunk.model or self._model, content=[],
                                 usage=aw.AUsage(input_tokens=0, output_tokens=0))
            out += event(aw.AEvent(type="message_start", message=start))
        if chunk.usage is not None:
            self.usage = token_usage(chunk.usage)
        for choice in chunk.choices[:1]:
            d = choice.delta
            if d.reasoning_content:
                self.chars += len(d.reasoning_content)
                if self._kind != "thinking":
                    out += self._open("thinking", aw.Block(type="thinking", thinking="", signature=""))
                delta = aw.ADelta(type="thinking_delta", thinking=d.reasoning_content)
                out += event(aw.AEvent(type="content_block_delta", index=self._block, delta=delta))
            if d.content:
                self.chars += len(d.content)
                if self._kind != "text":
                    out += self._open("text", aw.Block(type="text", text=""))
                delta = aw.ADelta(type="text_delta", text=d.content)
                out += event(aw.AEvent(type="content_block_delta", index=self._block, delta=delta))
            for call in d.tool_calls or ():
                fn = call.function or FunctionCall()
                kind = f"tool:{call.index or 0}"
                if kind != self._kind:
                    block = aw.Block(type="tool_use", id=call.id or f"toolu_{call.index or 0}",
                                     name=fn.name or "", input={})
                    out += self._open(kind, block)
                if fn.arguments:
                    self.chars += len(fn.arguments)
                    delta = aw.ADelta(type="input_json_delta", partial_json=fn.arguments)
                    out += event(aw.AEvent(type="content_block_delta", index=self._block, delta=delta))
            if choice.finish_reason:
                self._stop = STOP.get(choice.finish_reason, "end_turn")
        return out

    def _error(self, error: dict[str, Any] | None) -> bytes:
        """An upstream error mid-stream ends the stream with Anthropic's error event."""
        if error is None or self._done:
            return b""
        self.error = error_kind(error)
        self._done = True
        kind = error.get("type")
        doc = {"type": "error", "error": {
            "type": kind if kind in ERROR_TYPES else "api_error",
            "message": str(error.get("message") or "the upstream stream failed")}}
        return frame(aw.encoder.encode(doc), "error")

    def _end(self) -> bytes:
        self._done = True
        usage = aw.anthropic_usage(self.usage or TokenUsage())
        out = self._close()
        delta = aw.ADelta(stop_reason=self._stop)
        out += event(aw.AEvent(type="message_delta", delta=delta, usage=usage))
        return out + event(aw.AEvent(type="message_stop"))


class AnthropicToOpenAI:
    def __init__(self, file_urls: bool = False) -> None:
        self.file_urls = file_urls  # True only as the first half of Anthropic -> chat -> Gemini

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        try:
            req = aw.request_decoder.decode(out.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"invalid Messages request: {exc}") from None
        return "chat/completions", encoder.encode(to_chat(req, out.upstream_model, self.file_urls))

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp, usage = from_chat(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the upstream sent an unreadable chat completion: {exc}") from None
        return aw.encoder.encode(resp), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return ChatToAnthropicTap(out.upstream_model)
