"""OpenAI chat client -> AWS Bedrock Converse upstream: the request translated (system prompt,
turns, images and PDFs inline, tools and tool results, stop sequences), the whole answer
translated back to a chat.completion; the ConverseStream tap is openai_bedrock_stream.py.
Anthropic and Gemini clients reach Bedrock through chat (via_chat.py, ../codecs.py).

The model is not in the body: the adapter puts it in the URL (`/model/{modelId}/converse`).
What Converse has no field for is dropped: n, seed, penalties, response_format, user; a
`tool_choice` of "none" sends the tools without a choice (Converse cannot forbid calling them)."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import msgspec

from ...config.types import BedrockProvider
from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import bedrock as bw
from ..wire.openai_chat import (
    ChatCompletion,
    ChatRequest,
    Choice,
    ContentPart,
    FunctionCall,
    Message,
    ToolCall,
    arguments_object,
    chat_usage,
    encoder,
    parse_data_url,
    request_decoder,
)
from ..wire.parts import OPENAI_PARTS, check_type
from .codec import Outgoing, StreamTap
from .openai_bedrock_stream import FINISH, BedrockToChatTap

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/plain": "txt", "text/markdown": "md", "text/html": "html",
                    "text/csv": "csv"}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9 ()\[\]-]+")  # what Converse allows in a document's name


def decode_chat(body: bytes) -> ChatRequest:
    try:
        return request_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid chat completion request: {exc}") from None


def _image(url: str, where: str) -> bw.Block:
    data = parse_data_url(url)
    if data is None:
        raise InvalidRequest(f"{where}: Bedrock takes images inline only: send a data: URL, not a link",
                             param=where)
    fmt = IMAGE_FORMATS.get(data[0].lower())
    if fmt is None:
        raise InvalidRequest(f"{where}: Bedrock takes png, jpeg, gif or webp images (got {data[0]})",
                             param=where)
    return bw.Block(image=bw.Image(format=fmt, source=bw.ImageSource(bytes=data[1])))


def _document(part: ContentPart, where: str) -> bw.Block:
    ref = part.file
    data = parse_data_url(ref.file_data or "") if ref is not None else None
    if ref is None or data is None:
        raise InvalidRequest(f"{where}: Bedrock takes documents inline only (file_data as a data: URL)",
                             param=where)
    fmt = DOCUMENT_FORMATS.get(data[0].lower(), "pdf" if data[0] == "application/octet-stream" else "")
    if not fmt:
        raise InvalidRequest(f"{where}: Bedrock cannot read documents of type {data[0]}", param=where)
    stem = (ref.filename or "document").rsplit(".", 1)[0]
    name = _NAME_UNSAFE.sub("-", stem).strip() or "document"
    source = bw.DocumentSource(bytes=data[1])
    return bw.Block(document=bw.Document(format=fmt, name=name[:100], source=source))


def _blocks(content: str | list[ContentPart] | None, where: str) -> list[bw.Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [bw.Block(text=content)] if content else []
    out = []
    for i, part in enumerate(content):
        check_type(part.type, OPENAI_PARTS, f"{where}[{i}]")
        if part.type == "text" and part.text:
            out.append(bw.Block(text=part.text))
        elif part.type == "image_url" and part.image_url is not None:
            out.append(_image(part.image_url.url, f"{where}[{i}]"))
        elif part.type == "file":
            out.append(_document(part, f"{where}[{i}]"))
    return out


def _tool_result(m: Message, where: str) -> bw.Block:
    if isinstance(m.content, str) or m.content is None:
        content = [bw.ToolResultContent(text=m.content or "")]
    else:
        content = [bw.ToolResultContent(text=b.text, image=b.image)
                   for b in _blocks(m.content, where) if b.text is not None or b.image is not None]
    return bw.Block(toolResult=bw.ToolResult(toolUseId=m.tool_call_id or "", content=content))


def _append(messages: list[bw.BMessage], role: str, blocks: list[bw.Block]) -> None:
    """Converse wants user and assistant turns alternating: consecutive ones are merged."""
    if not blocks:
        return
    if messages and messages[-1].role == role:
        messages[-1].content.extend(blocks)
    else:
        messages.append(bw.BMessage(role=role, content=blocks))


def _tool_config(req: ChatRequest) -> bw.ToolConfig | None:
    if not req.tools:
        return None
    tools = [bw.BTool(toolSpec=bw.ToolSpec(
        name=t.function.name, description=t.function.description,
        inputSchema={"json": t.function.parameters or {"type": "object", "properties": {}}}))
        for t in req.tools]
    choice: dict[str, Any] | None = None
    tc = req.tool_choice
    if tc == "auto":
        choice = {"auto": {}}
    elif tc == "required":
        choice = {"any": {}}
    elif isinstance(tc, dict) and (name := (tc.get("function") or {}).get("name")):
        choice = {"tool": {"name": name}}
    return bw.ToolConfig(tools=tools, toolChoice=choice)


CACHE_POINT = {"type": "default"}


def to_converse(req: ChatRequest, default_max_tokens: int | None, prompt_cache: bool = False,
                ) -> bw.ConverseRequest:
    system: list[bw.SystemBlock] = []
    messages: list[bw.BMessage] = []
    for n, m in enumerate(req.messages):
        where = f"messages[{n}].content"
        if m.role in ("system", "developer"):
            system += [bw.SystemBlock(text=b.text) for b in _blocks(m.content, where) if b.text]
        elif m.role == "tool":
            _append(messages, "user", [_tool_result(m, where)])
        elif m.role == "assistant":
            blocks = _blocks(m.content, where)
            for call in m.tool_calls or ():
                fn = call.function or FunctionCall()
                blocks.append(bw.Block(toolUse=bw.ToolUse(toolUseId=call.id or "", name=fn.name or "",
                                                          input=arguments_object(fn.arguments))))
            _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _blocks(m.content, where))
    tools = _tool_config(req)
    if prompt_cache:  # the provider's `prompt_cache`: the prefix up to here is cached
        if system:
            system.append(bw.SystemBlock(cachePoint=CACHE_POINT))
        if tools is not None:
            tools.tools.append(bw.BTool(cachePoint=CACHE_POINT))
    config = bw.InferenceConfig(maxTokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
                                temperature=req.temperature, topP=req.top_p, stopSequences=req.stop_list)
    return bw.ConverseRequest(messages=messages, system=system or None,
                              inferenceConfig=config if config != bw.InferenceConfig() else None,
                              toolConfig=tools)


def from_converse(resp: bw.ConverseResponse, model: str) -> tuple[ChatCompletion, TokenUsage]:
    blocks = resp.output.message.content if resp.output.message else []
    text = "".join(b.text or "" for b in blocks)
    reasoning = "".join(b.reasoningContent.reasoningText.text for b in blocks
                        if b.reasoningContent and b.reasoningContent.reasoningText)
    uses = [b.toolUse for b in blocks if b.toolUse is not None]
    calls = [ToolCall(id=u.toolUseId, type="function",
                      function=FunctionCall(name=u.name, arguments=encoder.encode(u.input or {}).decode()))
             for u in uses]
    usage = bw.token_usage(resp.usage)
    message = Message(role="assistant", content=text if text or not calls else None,
                      tool_calls=calls or None, reasoning_content=reasoning or None)
    choice = Choice(index=0, message=message, finish_reason=FINISH.get(resp.stopReason, "stop"))
    return ChatCompletion(id=chat_id(), model=model, created=int(time.time()), choices=[choice],
                          usage=chat_usage(usage)), usage


def chat_id() -> str:
    return f"chatcmpl-{os.urandom(12).hex()}"  # Converse answers carry no id


def _spec(out: Outgoing) -> BedrockProvider | None:
    spec = out.provider.spec if out.provider is not None else None
    return spec if isinstance(spec, BedrockProvider) else None


class OpenAIToBedrock:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        if out.endpoint != "chat/completions":
            raise InvalidRequest(f"/v1/{out.endpoint} cannot be served by a Bedrock provider",
                                 code="unsupported_endpoint")
        spec = _spec(out)
        req = to_converse(decode_chat(out.body), spec.default_max_tokens if spec else None,
                          spec.prompt_cache if spec else False)
        return ("converse-stream" if out.stream else "converse"), bw.encoder.encode(req)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        try:
            resp = bw.response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(f"the Bedrock upstream sent an unreadable answer: {exc}") from None
        chat, usage = from_converse(resp, out.upstream_model)
        return encoder.encode(chat), usage

    def stream(self, out: Outgoing) -> StreamTap:
        return BedrockToChatTap(chat_id(), out.upstream_model, out.client_wants_usage)
