"""What the OpenAI stream tap (openai_openai.py) decodes from the events that mention usage, as
msgspec Structs kept apart so that the tap and the codec can be compiled (gateway/compiled.py)."""

from __future__ import annotations

import msgspec

from ..wire.openai_usage_types import _Usage, _UsageOnly


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[msgspec.Raw] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None
    usage: _Usage | None = None  # Moonshot sends the stream's usage in its last choice


class _Event(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    response: _UsageOnly | None = None  # Responses API: usage arrives in `response.completed`
    delta: str | None = None  # Responses API text deltas
    x_groq: _UsageOnly | None = None  # Groq (without stream_options) sends its usage here
