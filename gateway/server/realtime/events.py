"""What the relay reads of the Realtime API's server events: only `response.created` (when a
response starts) and `response.done` (its usage, billed as one usage row), found by a substring
test before any decoding, so the other frames pass untouched. And the `error` event the gateway
sends itself when it ends a session (RSGI gives it no close code or reason to send)."""

from __future__ import annotations

import itertools
import secrets

import msgspec

from ...core.usage import TokenUsage

DONE = '"response.done"'
CREATED = '"response.created"'


class _Modalities(msgspec.Struct):
    text_tokens: int = 0
    audio_tokens: int = 0


class _InputDetails(msgspec.Struct):
    text_tokens: int = 0
    audio_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_details: _Modalities | None = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: _InputDetails | None = None
    output_token_details: _Modalities | None = None


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    usage: _Usage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    response: _Response | None = None


_decode = msgspec.json.Decoder(_Event).decode


class Done(msgspec.Struct):
    """A finished response: its id, its status (completed, cancelled, failed, incomplete) and usage."""

    response_id: str | None
    status: str | None
    usage: TokenUsage


def response_done(text: str) -> Done | None:
    """The usage of a `response.done` event; None for any other frame (or one that is not JSON)."""
    if DONE not in text:
        return None
    try:
        event = _decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if event.type != "response.done" or event.response is None:
        return None
    r = event.response
    return Done(r.id, r.status, to_token_usage(r.usage) if r.usage is not None else TokenUsage(source="none"))


def to_token_usage(u: _Usage) -> TokenUsage:
    """Realtime usage in the gateway's convention (core/usage.py): audio input read from the
    cache is billed as cached input, the rest of the audio at the audio rates."""
    inp = u.input_token_details or _InputDetails()
    cached_audio = inp.cached_tokens_details.audio_tokens if inp.cached_tokens_details else 0
    out_audio = u.output_token_details.audio_tokens if u.output_token_details else 0
    return TokenUsage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        cached_tokens=inp.cached_tokens,
        audio_prompt_tokens=max(inp.audio_tokens - cached_audio, 0),
        audio_completion_tokens=out_audio,
    )


def is_response_created(text: str) -> bool:
    """A response starts (a false positive only moves a usage row's start time)."""
    return CREATED in text


class _Ids:
    prefix = "event_tg_" + secrets.token_hex(4)
    counter = itertools.count(1)


def error_event(code: str, message: str, kind: str = "server_error") -> str:
    """A Realtime API `error` server event, as OpenAI sends them."""
    return msgspec.json.encode({
        "type": "error",
        "event_id": f"{_Ids.prefix}{next(_Ids.counter):06d}",
        "error": {"type": kind, "code": code, "message": message, "param": None, "event_id": None},
    }).decode()
