"""A Responses API request as a chat completion request: `instructions` become the system
message, `input` items become turns (messages, function calls as assistant tool calls, function
call outputs as tool messages), function tools and `tool_choice` map one to one,
`max_output_tokens` becomes `max_tokens` and `text.format` becomes `response_format`.

Refused with a 400 naming the field, rather than silently answered wrong: `previous_response_id`
and `conversation` (the gateway keeps no responses), hosted tools (web_search, file_search...),
item references and unknown item or part types. Dropped: reasoning items sent back (their
encrypted content is only readable by OpenAI), `metadata`, `store`."""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import InvalidRequest
from ..wire import responses as rw
from ..wire.openai_chat import (
    ChatRequest,
    ContentPart,
    FileRef,
    FunctionCall,
    FunctionDef,
    ImageUrl,
    Message,
    StreamOptions,
    Tool,
    ToolCall,
)

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
DROPPED_ITEMS = frozenset({"reasoning"})


def decode_request(body: bytes) -> rw.RRequest:
    try:
        return rw.request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid Responses request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def _part(p: rw.InputPart, where: str) -> ContentPart:
    if p.type in ("input_text", "output_text", "text"):
        return ContentPart(type="text", text=p.text or "")
    if p.type == "refusal":
        return ContentPart(type="text", text=p.refusal or "")
    if p.type == "input_image":
        if not p.image_url:
            raise InvalidRequest(f"{where}: an input_image needs an image_url (a URL or a data: URL); "
                                 "file_id images need OpenAI's own Files API", param=where)
        return ContentPart(type="image_url", image_url=ImageUrl(url=p.image_url, detail=p.detail))
    if p.type == "input_file":
        if p.file_url:
            raise InvalidRequest(f"{where}: input_file file_url cannot be translated to chat completions; "
                                 "send the file inline as file_data", param=where)
        return ContentPart(type="file", file=FileRef(file_data=p.file_data, file_id=p.file_id,
                                                     filename=p.filename))
    raise InvalidRequest(f"{where}: unsupported content type {p.type[:60]!r}", param=where)


def _content(content: str | list[rw.InputPart] | None, where: str) -> str | list[ContentPart]:
    if content is None or isinstance(content, str):
        return content or ""
    parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    if all(p.type == "text" for p in parts):
        return "".join(p.text or "" for p in parts)
    return parts


def _output(output: str | list[rw.InputPart] | None, where: str) -> str:
    content = _content(output, where)
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")


def _call(item: rw.InputItem, messages: list[Message], where: str) -> None:
    if not item.call_id or not item.name:
        raise InvalidRequest(f"{where}: a function_call needs call_id and name", param=where)
    call = ToolCall(id=item.call_id, type="function",
                    function=FunctionCall(name=item.name, arguments=item.arguments or "{}"))
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant":  # parallel calls, or text then calls
        last.tool_calls = [*(last.tool_calls or ()), call]
    else:
        messages.append(Message(role="assistant", content=None, tool_calls=[call]))


def _messages(req: rw.RRequest) -> list[Message]:
    messages: list[Message] = []
    if req.instructions:
        messages.append(Message(role="system", content=req.instructions))
    if isinstance(req.input, str):
        messages.append(Message(role="user", content=req.input))
        return messages
    for n, item in enumerate(req.input):
        where = f"input[{n}]"
        kind = item.type or "message"
        if kind == "message":
            role = ROLES.get(item.role or "")
            if role is None:
                raise InvalidRequest(f"{where}: unsupported role {str(item.role)[:40]!r}",
                                     param=f"{where}.role")
            messages.append(Message(role=role, content=_content(item.content, f"{where}.content")))
        elif kind == "function_call":
            _call(item, messages, where)
        elif kind == "function_call_output":
            if not item.call_id:
                raise InvalidRequest(f"{where}: a function_call_output needs call_id", param=where)
            messages.append(Message(role="tool", tool_call_id=item.call_id,
                                    content=_output(item.output, f"{where}.output")))
        elif kind not in DROPPED_ITEMS:
            raise InvalidRequest(f"{where}: input items of type {kind[:60]!r} cannot be translated to "
                                 "chat completions for this provider", param=where)
    return messages


def _tools(req: rw.RRequest) -> list[Tool] | None:
    tools = []
    for n, t in enumerate(req.tools or ()):
        if t.type != "function":
            raise InvalidRequest(f"tools[{n}]: tool type {t.type[:60]!r} is not supported for this provider "
                                 "(only function tools can be translated to chat completions)",
                                 param=f"tools[{n}].type")
        if not t.name:
            raise InvalidRequest(f"tools[{n}]: a function tool needs a name", param=f"tools[{n}].name")
        fn = FunctionDef(name=t.name, description=t.description, parameters=t.parameters)
        tools.append(Tool(function=fn))
    return tools or None


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(f"tool_choice of type {str(choice.get('type'))[:60]!r} is not supported for this "
                         "provider", param="tool_choice")


def _response_format(text: rw.TextConfig | None) -> dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(f"text.format of type {fmt.type[:60]!r} is not supported", param="text.format.type")


def to_chat(req: rw.RRequest, model: str) -> ChatRequest:
    if req.previous_response_id:
        raise InvalidRequest("previous_response_id is not supported for this provider: the gateway keeps "
                             "no responses; send the whole conversation in `input`",
                             param="previous_response_id")
    if req.conversation is not None:
        raise InvalidRequest("conversation is not supported for this provider: the gateway keeps no "
                             "conversations; send the whole conversation in `input`", param="conversation")
    tools = _tools(req)
    return ChatRequest(
        model=model, messages=_messages(req), max_tokens=req.max_output_tokens,
        temperature=req.temperature, top_p=req.top_p, tools=tools,
        tool_choice=_tool_choice(req.tool_choice) if tools else None,
        parallel_tool_calls=req.parallel_tool_calls if tools else None,
        response_format=_response_format(req.text), user=req.user or req.safety_identifier,
        reasoning_effort=req.reasoning.effort if req.reasoning else None,
        stream=True if req.stream else None,
        stream_options=StreamOptions(include_usage=True) if req.stream else None,
    )
