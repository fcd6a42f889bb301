"""The OpenAI Responses API on the wire, as typed Structs: the request the gateway translates to
a chat completion request, and the Response object, output items and stream events it builds
back from chat. Only what the translation reads or writes is typed; unknown request fields are
ignored (see ../translate/responses_request.py for what is refused instead)."""

from __future__ import annotations

from typing import Any

import msgspec


class _S(msgspec.Struct, omit_defaults=True):
    pass


# -- the request ----------------------------------------------------------------------------

class InputPart(_S):
    """A content part of an input message: input_text / input_image / input_file, or
    output_text / refusal in an assistant turn sent back."""

    type: str
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    refusal: str | None = None


class InputItem(_S):
    """One `input` item: a message (`type` "message" or absent), a function_call, a
    function_call_output, or another item type (reasoning, item_reference...)."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None
    id: str | None = None


class RTool(_S):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_S):
    type: str = "text"  # text | json_schema | json_object
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(_S):
    format: TextFormat | None = None


class Reasoning(_S):
    effort: str | None = None


class RRequest(_S):
    model: str = ""
    input: str | list[InputItem] = []
    instructions: str | None = None
    tools: list[RTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stream: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    store: bool | None = None  # ignored: the gateway keeps no responses


class Echo(msgspec.Struct):
    """The request fields a Response object repeats back, kept as sent."""

    instructions: msgspec.Raw = msgspec.Raw(b"null")
    tools: msgspec.Raw = msgspec.Raw(b"[]")
    tool_choice: msgspec.Raw = msgspec.Raw(b'"auto"')
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    text: msgspec.Raw = msgspec.Raw(b'{"format":{"type":"text"}}')
    user: str | None = None


# -- the Response object --------------------------------------------------------------------

class OutputText(msgspec.Struct):  # every field on the wire
    text: str = ""
    type: str = "output_text"
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputItem(_S):
    """A message (content) or a function_call (call_id, name, arguments) output item."""

    id: str
    type: str
    status: str  # in_progress | completed | incomplete
    role: str | None = None
    content: list[OutputText] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class InputDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class RUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: InputDetails = msgspec.field(default_factory=InputDetails)
    output_tokens_details: OutputDetails = msgspec.field(default_factory=OutputDetails)


class Incomplete(msgspec.Struct):
    reason: str


class RError(msgspec.Struct):
    code: str
    message: str


class Response(msgspec.Struct):  # every field on the wire, nulls included
    id: str
    created_at: int
    model: str
    status: str = "completed"
    object: str = "response"
    output: list[OutputItem] = []
    usage: RUsage | None = None
    incomplete_details: Incomplete | None = None
    error: RError | None = None
    instructions: msgspec.Raw = msgspec.Raw(b"null")
    tools: msgspec.Raw = msgspec.Raw(b"[]")
    tool_choice: msgspec.Raw = msgspec.Raw(b'"auto"')
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    text: msgspec.Raw = msgspec.Raw(b'{"format":{"type":"text"}}')
    user: str | None = None
    previous_response_id: None = None
    store: bool = False


class Event(_S):
    """One stream event; `sequence_number` counts from 0 over the whole stream."""

    type: str
    sequence_number: int
    response: Response | None = None
    output_index: int | None = None
    item: OutputItem | None = None
    item_id: str | None = None
    content_index: int | None = None
    part: OutputText | None = None
    delta: str | None = None
    text: str | None = None
    arguments: str | None = None
    logprobs: list[Any] | None = None


request_decoder = msgspec.json.Decoder(RRequest)
echo_decoder = msgspec.json.Decoder(Echo)
encoder = msgspec.json.Encoder()
