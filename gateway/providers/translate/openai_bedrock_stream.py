"""Bedrock ConverseStream -> OpenAI chat.completion.chunk events: the upstream's event-stream
messages (../wire/eventstream.py) are decoded one by one and each event becomes a chunk:

| ConverseStream event                       | chat chunk                                   |
|--------------------------------------------|----------------------------------------------|
| messageStart                               | delta {role: assistant, content: ""}         |
| contentBlockStart {toolUse}                | delta tool_calls[i] {id, name, arguments ""} |
| contentBlockDelta {text}                   | delta content                                |
| contentBlockDelta {toolUse: {input}}       | delta tool_calls[i] {arguments}              |
| contentBlockDelta {reasoningContent.text}  | delta reasoning_content                      |
| messageStop {stopReason}                   | finish_reason                                |
| metadata {usage}                           | (the usage chunk, at the end, when asked)    |
| an exception message                       | {"error": {...}} and the usage row's error   |
"""

from __future__ import annotations

import msgspec

from ..wire import bedrock as bw
from ..wire.eventstream import EventStreamReader, FramingError, Message
from ..wire.openai_chat import ChatChunk, ChunkChoice, Delta, FunctionCall, ToolCall, encoder
from ..wire.sse import frame
from .tap import ChatOutTap

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}


class BedrockToChatTap(ChatOutTap):
    def __init__(self, chunk_id: str, model: str, include_usage: bool) -> None:
        super().__init__(chunk_id, model, include_usage)
        self._frames = EventStreamReader()
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._broken = False

    def feed(self, chunk: bytes) -> bytes:
        if self._broken:
            return b""
        out = []
        try:
            out += [self._message(m) for m in self._frames.feed(chunk)]
        except FramingError as exc:
            self._broken = True
            out.append(self._fail("upstream_stream_error:framing",
                                  f"the Bedrock stream is not valid event-stream framing ({exc})"))
        return b"".join(out)

    def flush(self) -> bytes:
        return b"" if self._done else self._end()

    def _chunk(self, delta: Delta, finish: str | None = None) -> bytes:
        doc = ChatChunk(id=self._id, model=self._model, created=self._created,
                        choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return frame(encoder.encode(doc))

    def _fail(self, kind: str, message: str) -> bytes:
        self.error = kind
        return frame(encoder.encode({"error": {"message": message, "type": kind.rpartition(":")[2]}}))

    def _message(self, m: Message) -> bytes:
        if m.message_type != "event":
            try:
                text = msgspec.json.decode(m.payload, type=bw.StreamEvent).message
            except (msgspec.DecodeError, msgspec.ValidationError):
                text = None
            return self._fail(f"upstream_stream_error:{m.event_type or 'exception'}",
                              text or m.payload[:200].decode("utf-8", "replace"))
        try:
            ev = bw.event_decoder.decode(m.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b""
        return self._event_of(m.event_type, ev)

    def _event_of(self, name: str, ev: bw.StreamEvent) -> bytes:
        if name == "contentBlockDelta" and ev.delta is not None:
            return self._delta(ev.contentBlockIndex, ev.delta)
        if name == "contentBlockStart" and ev.start is not None and ev.start.toolUse is not None:
            use = ev.start.toolUse
            index = self._tools[ev.contentBlockIndex] = len(self._tools)
            self.chars += len(use.name)
            call = ToolCall(index=index, id=use.toolUseId, type="function",
                            function=FunctionCall(name=use.name, arguments=""))
            return self._chunk(Delta(tool_calls=[call]))
        if name == "messageStart":
            return self._chunk(Delta(role="assistant", content=""))
        if name == "messageStop":
            return self._chunk(Delta(), FINISH.get(ev.stopReason or "", "stop"))
        if name == "metadata" and ev.usage is not None:
            self.usage = bw.token_usage(ev.usage)
        return b""

    def _delta(self, block: int, d: bw.Delta) -> bytes:
        if d.text:
            self.chars += len(d.text)
            return self._chunk(Delta(content=d.text))
        if d.toolUse is not None and d.toolUse.input:
            self.chars += len(d.toolUse.input)
            call = ToolCall(index=self._tools.get(block, 0), function=FunctionCall(arguments=d.toolUse.input))
            return self._chunk(Delta(tool_calls=[call]))
        if d.reasoningContent is not None and d.reasoningContent.text:
            self.chars += len(d.reasoningContent.text)
            return self._chunk(Delta(reasoning_content=d.reasoningContent.text))
        return b""
