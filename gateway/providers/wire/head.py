"""Decode only what the gateway needs from a request body, and rewrite only what it must.

The body is forwarded byte for byte unless the model name changes or the upstream must be
asked for stream usage; then a `dict[str, Raw]` rewrite keeps every unknown field intact.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ...errors import InvalidRequest
from .head_types import Head as Head  # re-exported: the request head's type
from .head_types import Tokens as Tokens

_decoder = msgspec.json.Decoder(Head)
_raw_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_PATH = re.compile(r"`\$\.?([^`]*)`")
_FORM_MODEL = re.compile(rb'(name="model"\r\n(?:[^\r\n]+\r\n)*\r\n)([^\r]*)(\r\n)')
_FORM_STREAM = re.compile(rb'name="stream"\r\n(?:[^\r\n]+\r\n)*\r\n(true|1)\r\n')


TOO_DEEP = "the request body is nested too deeply to decode"


def decode_head(body: bytes) -> Head:
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        param = match.group(1) if match else None
        message = text.split(" - at ")[0]
        raise InvalidRequest(
            f"invalid request body: {message} at `{param}`" if param else f"invalid request body: {message}",
            param=param,
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(TOO_DEEP) from None


def rewrite_json(body: bytes, model: str | None, want_usage: bool, *,
                 drop_stream_options: bool = False) -> bytes:
    """Set `model` and/or `stream_options.include_usage` (or drop `stream_options`, for an
    upstream that refuses it), keeping everything else as sent."""
    doc = _raw_decoder.decode(body)
    if model is not None:
        doc["model"] = msgspec.Raw(msgspec.json.encode(model))
    if drop_stream_options:
        doc.pop("stream_options", None)
    elif want_usage:
        options: dict[str, Any] = {}
        if "stream_options" in doc:
            options = msgspec.json.decode(doc["stream_options"]) or {}
        options["include_usage"] = True
        doc["stream_options"] = msgspec.Raw(msgspec.json.encode(options))
    return msgspec.json.encode(doc)


def form_head(body: bytes) -> Head:
    """The model (and stream flag) of a multipart/form-data request (audio transcriptions)."""
    match = _FORM_MODEL.search(body)
    if match is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    model = match.group(2).decode("utf-8", "replace")
    return Head(model=model, stream=_FORM_STREAM.search(body) is not None)


def rewrite_form_model(body: bytes, model: str) -> bytes:
    return _FORM_MODEL.sub(lambda m: m.group(1) + model.encode() + m.group(3), body, count=1)
