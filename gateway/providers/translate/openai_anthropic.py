"""OpenAI chat client -> Anthropic Messages upstream: the request translated (system prompt,
turns, images, tools and tool results), the answer and the stream translated back to
chat.completion / chat.completion.chunk, one client event per upstream event."""

from __future__ import annotations

import time

import msgspec

from ...config.types import AnthropicProvider, VertexProvider
from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import anthropic as aw
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
    arguments_object,
    chat_usage,
    encoder,
    error_kind,
    parse_data_url,
    request_decoder,
    text_of,
)
from ..wire.parts import OPENAI_PARTS, check_type
from ..wire.sse import frame
from . import documents, reasoning
from .codec import Outgoing, StreamTap
from .tap import ChatOutTap

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}


def decode_chat(body: bytes) -> ChatRequest:
    try:
        return request_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid chat completion request: {exc}") from None


def _image(url: str) -> aw.Block:
    data = parse_data_url(url)
    if data is None:
        return aw.Block(type="image", source=aw.Source(type="url", url=url))
    return aw.Block(type="image", source=aw.Source(type="base64", media_type=data[0], data=data[1]))


def _blocks(content: str | list[ContentPart] | None, where: str) -> list[aw.Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [aw.Block(type="text", text=content)] if content else []
    out = []
    for i, part in enumerate(content):
        check_type(part.type, OPENAI_PARTS, f"{where}[{i}]")
        if part.type == "text" and part.text:
            out.append(aw.Block(type="text", text=part.text))
        elif part.type == "image_url" and part.image_url is not None:
            out.append(_image(part.image_url.url))
        elif part.type == "file":
            out.append(documents.to_anthropic(part.file, f"{where}[{i}]"))
    return out


def _append(messages: list[aw.AMessage], role: str, blocks: list[aw.Block]) -> None:
    if not blocks:
        return
    last = messages[-1] if messages else None
    if last is not None and last.role == role and isinstance(last.content, list):
        last.content.extend(blocks)
    else:
        messages.append(aw.AMessage(role=role, content=blocks))


def _tool_choice(req: ChatRequest) -> aw.AToolChoice | None:
    choice, tc = None, req.tool_choice
    if tc == "auto":
        choice = aw.AToolChoice(type="auto")
    elif tc == "required":
        choice = aw.AToolChoice(type="any")
    elif tc == "none":
        choice = aw.AToolChoice(type="none")
    elif isinstance(tc, dict):
        name = (tc.get("function") or {}).get("name")
        choice = aw.AToolChoice(type="tool", name=name) if name else aw.AToolChoice(type="auto")
    if req.parallel_tool_calls is False and req.tools:
        choice = choice or aw.AToolChoice(type="auto")
        if choice.type != "none":
            choice.disable_parallel_tool_use = True
    return choice


def to_anthropic(req: ChatRequest, model: str, default_max_tokens: int, stream: bool) -> aw.ARequest:
    system: list[str] = []
    messages: list[aw.AMessage] = []
    for n, m in enumerate(req.messages):
        where = f"messages[{n}].content"
        if m.role in ("system", "developer"):
            system.append(text_of(m.content))
        elif m.role == "tool":
            result = m.content if isinstance(m.content, str) else _blocks(m.content, where)
            _append(messages, "user", [aw.Block(type="tool_result", tool_use_id=m.tool_call_id or "",
                                                content=result)])
        elif m.role == "assistant":
            blocks = _blocks(m.content, where)
            for call in m.tool_calls or ():
                fn = call.function or FunctionCall()
                blocks.append(aw.Block(type="tool_use", id=call.id or "", name=fn.name or "",
                                       input=arguments_object(fn.arguments)))
            _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _blocks(m.content, where))
    tools = [aw.ATool(name=t.function.name, description=t.function.description,
                      input_schema=t.function.parameters or {"type": "object", "properties": {}})
             for t in req.tools or ()]
    temperature = min(req.temperature, 1.0) if req.temperature is not None else None
    max_tokens = req.max_completion_tokens or req.max_tokens or default_max_tokens
    thinking, max_tokens = reasoning.anthropic_thinking(req.reasoning_effort, max_tokens)
    if thinking is not None and thinking["type"] == "enabled":
        temperature = None  # Anthropic refuses a changed temperature with thinking on
    return aw.ARequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        thinking=thinking,
        system="\n\n".join(system) if system else None,
        stream=True if stream else None,
        temperature=temperature,
        top_p=req.top_p,
        stop_sequences=req.stop_list,
        tools=tools or None,
        tool_choice=_tool_choice(req),
        metadata={"user_id": req.user} if req.user else None,
    )


def from_anthropic(resp: aw.AResponse) -> tuple[ChatCompletion, TokenUsage]:
    text = "".join(b.text or "" for b in resp.content if b.type == "text")
    reasoning = "".join(b.thinking or "" for b in resp.content if b.type == "thinking")
    calls = [ToolCall(id=b.id, type="function",
                      function=FunctionCall(name=b.name, arguments=encoder.encode(b.input or {}).decode()))
             for b in resp.content if b.type == "tool_use"]
    usage = aw.token_usage(resp.usage)
    message = Message(role="assistant", content=text if text or not calls else None,
                      tool_calls=calls or None, reasoning_content=reasoning or None)
    choice = Choice(index=0, message=message, finish_reason=FINISH.get(resp.stop_reason or "", "stop"))
    return ChatCompletion(id=resp.id, model=resp.model, created=int(time.time()), choices=[choice],
                          usage=chat_usage(usage)), usage


class AnthropicToChatTap(ChatOutTap):
    """Anthropic stream events in, chat.completion.chunk events out."""

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__("", model, include_usage)
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._au: aw.AUsage | None = None

    def _chunk(self, delta: Delta, finish: str | None = None) -> bytes:
        doc = ChatChunk(id=self._id, model=self._model, created=self._created,
                        choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return frame(encoder.encode(doc))

    def _event(self, data: bytes) -> bytes:
        try:
            ev = aw.event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b""
        if ev.type == "content_block_delta" and ev.delta is not None:
            d = ev.delta
            if d.type == "text_delta" and d.text:
                self.chars += len(d.text)
                return self._chunk(Delta(content=d.text))
            if d.type == "input_json_delta" and d.partial_json:
                self.chars += len(d.partial_json)
                call = ToolCall(index=self._tools.get(ev.index or 0, 0),
                                function=FunctionCall(arguments=d.partial_json))
                return self._chunk(Delta(tool_calls=[call]))
            if d.type == "thinking_delta" and d.thinking:
                self.chars += len(d.thinking)
                return self._chunk(Delta(reasoning_content=d.thinking))
            return b""
        if ev.type == "content_block_start" and ev.content_block is not None:
            block = ev.content_block
            if block.type == "tool_use":
                index = self._tools[ev.index or 0] = len(self._tools)
                self.chars += len(block.name or "")
                call = ToolCall(index=index, id=block.id, type="function",
                                function=FunctionCall(name=block.name, arguments=""))
                return self._chunk(Delta(tool_calls=[call]))
            if block.type == "text" and block.text:
                self.chars += len(block.text)
                return self._chunk(Delta(content=block.text))
            return b""
        if ev.type == "message_start" and ev.message is not None:
            self._id, self._model = ev.message.id, ev.message.model or self._model
            self._au = ev.message.usage
            return self._chunk(Delta(role="assistant", content=""))
        if ev.type == "message_delta":
            if ev.usage is not None:
                self._au = aw.merge_usage(self._au, ev.usage)
                self.usage = aw.token_usage(self._au)
            reason = ev.delta.stop_reason if ev.delta else None
            return self._chunk(Delta(), FINISH.get(reason or "", "stop")) if reason else b""
        if ev.type == "message_stop":
            return self._end()
        if ev.type == "error":
            self.error = error_kind(ev.error)
            return frame(encoder.encode({"error": ev.error or {"message": "upstream stream error"}}))
        return b""


def default_max_tokens(out: Outgoing) -> int:
    spec = out.provider.spec if out.provider is not None else None
    return spec.default_max_tokens if isinstance(spec, AnthropicProvider | VertexProvider) else 4096


class OpenAIToAnthropic:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        if out.endpoint != "chat/completions":
            raise InvalidRequest(f"/v1/{out.endpoint} cannot be served by an Anthropic provider",
                                 code="unsupported_endpoint")
        req = to_anthropic(decode_chat(out.body), out.upstream_model, default_max_tokens(out), out.stream)
        return "messages", aw.encoder.encode(req)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp = aw.response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the Anthropic upstream sent an unreadable answer: {exc}") from None
        chat, usage = from_anthropic(resp)
        return encoder.encode(chat), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return AnthropicToChatTap(out.upstream_model, out.client_wants_usage)
