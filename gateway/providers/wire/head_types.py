"""The request head: the few fields of a request body the gateway reads (wire/head.py decodes
it). msgspec Structs live apart from the functions that use them, so those functions can be
compiled (gateway/compiled.py: mypyc rewrites a compiled module's annotations, which msgspec
reads)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# An output-token cap: not negative, and within int32 (Gemini's field type; more than any model
# takes), so a client cannot reserve a negative or unbounded amount of tokens from the limiter.
Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class Head(msgspec.Struct):
    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    messages: list[msgspec.Raw] | None = None
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    max_output_tokens: Tokens | None = None
    metadata: dict[str, Any] | None = None
    n: int | None = None

    @property
    def client_wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    @property
    def token_limit(self) -> int:
        return self.max_tokens or self.max_completion_tokens or self.max_output_tokens or 0
