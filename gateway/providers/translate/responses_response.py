"""A chat completion as a Responses API Response object: the message text as a `message` output
item with one `output_text` part, each tool call as a `function_call` item (call_id = the chat
tool call id), the usage in Responses terms, `finish_reason` "length" (or "content_filter") as
status "incomplete" with its `incomplete_details`. Reasoning text is not carried (chat has no
signed reasoning to give back)."""

from __future__ import annotations

import time

import msgspec

from ...core.usage import TokenUsage
from ..wire import responses as rw
from ..wire.openai_chat import completion_decoder, text_of, token_usage

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(chat_id: str) -> str:
    return chat_id if chat_id.startswith("resp_") else f"resp_{chat_id or int(time.time() * 1000)}"


def usage(u: TokenUsage) -> rw.RUsage:
    return rw.RUsage(input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens,
                     total_tokens=u.prompt_tokens + u.completion_tokens,
                     input_tokens_details=rw.InputDetails(cached_tokens=u.cached_tokens),
                     output_tokens_details=rw.OutputDetails(reasoning_tokens=u.reasoning_tokens))


def echo(request_body: bytes) -> rw.Echo:
    try:
        return rw.echo_decoder.decode(request_body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return rw.Echo()


def response(rid: str, model: str, e: rw.Echo, created: int, status: str = "completed") -> rw.Response:
    """A Response object with the request's fields echoed; output and usage are set later."""
    return rw.Response(id=rid, created_at=created, model=model, status=status, output=[],
                       **msgspec.structs.asdict(e))


def finish(resp: rw.Response, finish_reason: str | None) -> None:
    reason = INCOMPLETE.get(finish_reason or "")
    resp.status = "incomplete" if reason else "completed"
    resp.incomplete_details = rw.Incomplete(reason=reason) if reason else None


def from_chat(body: bytes, request_body: bytes) -> tuple[rw.Response, TokenUsage | None]:
    chat = completion_decoder.decode(body)
    resp = response(response_id(chat.id), chat.model, echo(request_body), chat.created or int(time.time()))
    choice = chat.choices[0] if chat.choices else None
    message = choice.message if choice is not None else None
    if message is not None:
        text = text_of(message.content)
        if text:
            resp.output.append(rw.OutputItem(id=f"msg_{chat.id}", type="message", status="completed",
                                             role="assistant", content=[rw.OutputText(text=text)]))
        for n, call in enumerate(message.tool_calls or ()):
            fn = call.function
            call_id = call.id or f"call_{n}"
            resp.output.append(rw.OutputItem(id=f"fc_{call_id}", type="function_call", status="completed",
                                             call_id=call_id,
                                             name=(fn.name if fn else None) or "",
                                             arguments=(fn.arguments if fn else None) or ""))
    finish(resp, choice.finish_reason if choice is not None else None)
    used = token_usage(chat.usage) if chat.usage else None
    resp.usage = usage(used or TokenUsage())
    return resp, used
