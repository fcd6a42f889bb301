"""chat.completion.chunk events in, Responses API stream events out, as each chunk arrives:

response.created, response.in_progress, then per output item response.output_item.added,
(message) response.content_part.added, response.output_text.delta..., response.output_text.done,
response.content_part.done, (function call) response.function_call_arguments.delta...,
response.function_call_arguments.done, then response.output_item.done; at the end (the chat
stream's [DONE], after its usage chunk) response.completed, or response.incomplete when the
upstream stopped at the token limit. An upstream error mid-stream ends it with response.failed.
Every event carries a `sequence_number`. Only the open item's text is kept, for its .done events
and the final Response object (which lists every item, as OpenAI's does)."""

from __future__ import annotations

import time

import msgspec

from ...core.usage import TokenUsage
from ..wire import responses as rw
from ..wire.openai_chat import (
    ChatChunk,
    FunctionCall,
    ToolCall,
    chunk_decoder,
    error_kind,
    stream_error,
    token_usage,
)
from ..wire.sse import frame
from .responses_response import echo, finish, response, response_id, usage
from .tap import EventTap


class ChatToResponsesTap(EventTap):
    def __init__(self, model: str, request_body: bytes) -> None:
        super().__init__()
        self._resp = response("", model, echo(request_body), int(time.time()), "in_progress")
        self._seq = 0
        self._started = False
        self._kind = ""  # "text" or "tool:<n>" for the open output item; "" when none is open
        self._item: rw.OutputItem | None = None
        self._buffer: list[str] = []  # the open item's text or arguments so far
        self._finish: str | None = None

    @property
    def sequence(self) -> int:
        """The next event's sequence_number (for an error event the relay appends)."""
        return self._seq

    def _emit(self, kind: str, **fields: object) -> bytes:
        event = rw.Event(type=kind, sequence_number=self._seq, **fields)  # type: ignore[arg-type]
        self._seq += 1
        return frame(rw.encoder.encode(event), kind)

    def _start(self, chunk: ChatChunk | None) -> bytes:
        self._started = True
        if chunk is not None:
            self._resp.id = response_id(chunk.id)
            self._resp.model = chunk.model or self._resp.model
        return (self._emit("response.created", response=self._resp)
                + self._emit("response.in_progress", response=self._resp))

    def _open(self, kind: str, item: rw.OutputItem) -> bytes:
        out = self._close()
        self._kind, self._item, self._buffer = kind, item, []
        out += self._emit("response.output_item.added", output_index=len(self._resp.output), item=item)
        if kind == "text":
            out += self._emit("response.content_part.added", item_id=item.id,
                              output_index=len(self._resp.output), content_index=0, part=rw.OutputText())
        return out

    def _close(self) -> bytes:
        item, index = self._item, len(self._resp.output)
        if item is None:
            return b""
        text, out = "".join(self._buffer), b""
        if self._kind == "text":
            part = rw.OutputText(text=text)
            out += self._emit("response.output_text.done", item_id=item.id, output_index=index,
                              content_index=0, text=text, logprobs=[])
            out += self._emit("response.content_part.done", item_id=item.id, output_index=index,
                              content_index=0, part=part)
            item.content = [part]
        else:
            out += self._emit("response.function_call_arguments.done", item_id=item.id, output_index=index,
                              arguments=text)
            item.arguments = text
        item.status = "completed"
        out += self._emit("response.output_item.done", output_index=index, item=item)
        self._resp.output.append(item)
        self._kind, self._item, self._buffer = "", None, []
        return out

    def _text(self, text: str, chunk_id: str) -> bytes:
        out = b""
        if self._kind != "text":
            item = rw.OutputItem(id=f"msg_{chunk_id}_{len(self._resp.output)}", type="message",
                                 status="in_progress", role="assistant", content=[])
            out += self._open("text", item)
        self._buffer.append(text)
        self.chars += len(text)
        assert self._item is not None
        return out + self._emit("response.output_text.delta", item_id=self._item.id,
                                output_index=len(self._resp.output), content_index=0, delta=text, logprobs=[])

    def _tool(self, call: ToolCall) -> bytes:
        fn = call.function or FunctionCall()
        kind, out = f"tool:{call.index or 0}", b""
        if kind != self._kind:
            call_id = call.id or f"call_{call.index or 0}"
            item = rw.OutputItem(id=f"fc_{call_id}", type="function_call", status="in_progress",
                                 call_id=call_id, name=fn.name or "", arguments="")
            self.chars += len(fn.name or "")
            out += self._open(kind, item)
        if fn.arguments:
            self._buffer.append(fn.arguments)
            self.chars += len(fn.arguments)
            assert self._item is not None
            out += self._emit("response.function_call_arguments.delta", item_id=self._item.id,
                              output_index=len(self._resp.output), delta=fn.arguments)
        return out

    def _event(self, data: bytes) -> bytes:
        if self._done:
            return b""
        if data.strip() == b"[DONE]":
            return self._end()
        try:
            chunk = chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._failed(stream_error(data))
        out = b"" if self._started else self._start(chunk)
        if chunk.usage is not None:
            self.usage = token_usage(chunk.usage)
        for choice in chunk.choices[:1]:
            d = choice.delta
            if d.content:
                out += self._text(d.content, chunk.id)
            for call in d.tool_calls or ():
                out += self._tool(call)
            if choice.finish_reason:
                self._finish = choice.finish_reason
        return out

    def _end(self) -> bytes:
        self._done = True
        out = b"" if self._started else self._start(None)
        out += self._close()
        finish(self._resp, self._finish)
        self._resp.usage = usage(self.usage or TokenUsage())
        kind = "response.incomplete" if self._resp.status == "incomplete" else "response.completed"
        return out + self._emit(kind, response=self._resp)

    def _failed(self, error: dict[str, object] | None) -> bytes:
        """An upstream error mid-stream ends the stream with response.failed."""
        if error is None:
            return b""
        self.error = error_kind(error)
        self._done = True
        out = b"" if self._started else self._start(None)
        self._resp.status = "failed"
        code = str(error.get("code") or error.get("type") or "server_error")
        message = str(error.get("message") or "the upstream stream failed")
        self._resp.error = rw.RError(code=code, message=message)
        return out + self._emit("response.failed", response=self._resp)
