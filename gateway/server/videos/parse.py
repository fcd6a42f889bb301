"""`POST /v1/videos` bodies: JSON, or multipart/form-data (what the openai SDK sends; a file part
`input_reference` may come with it). The fields are checked; the body is forwarded to OpenAI
kinds as sent, with only the model part rewritten to the upstream's model name."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from ...errors import InvalidRequest, UnsupportedMediaType
from ...providers.wire import videos as wire
from ...providers.wire.head import TOO_DEEP

FORM = "multipart/form-data"
_BOUNDARY = re.compile(r';\s*boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'content-disposition:[^\r\n]*;\s*name="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb"content-disposition:[^\r\n]*;\s*filename\*?=", re.IGNORECASE)
_TEXT_FIELDS = frozenset({"prompt", "model", "seconds", "size"})


@dataclass(slots=True)
class VideoRequest:
    prompt: str
    model: str
    seconds: int
    size: str
    body: bytes
    content_type: str  # as forwarded: application/json, or the client's multipart type (boundary)
    is_form: bool = False
    has_file: bool = False


@dataclass(slots=True)
class _Part:
    raw: bytes  # headers and content, between two delimiters
    name: str | None
    is_file: bool


def _boundary(content_type: str) -> bytes:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidRequest(f"the {FORM} content type has no boundary")
    return b"--" + match.group(1).strip().encode("latin-1", "replace")


def _parts(body: bytes, delimiter: bytes) -> list[_Part]:
    if not body.startswith(delimiter):
        raise InvalidRequest(f"the request body is not {FORM} with the boundary of its content type")
    chunks = body.split(b"\r\n" + delimiter)
    chunks[0] = chunks[0][len(delimiter) :]
    if not chunks[-1].startswith(b"--"):
        raise InvalidRequest(f"the {FORM} body is cut: its closing boundary is missing")
    parts = []
    for raw in chunks[:-1]:
        head = raw.partition(b"\r\n\r\n")[0]
        name = _NAME.search(head)
        parts.append(
            _Part(
                raw,
                name.group(1).decode("utf-8", "replace") if name else None,
                _FILENAME.search(head) is not None,
            )
        )
    return parts


def _value(part: _Part) -> str:
    return part.raw.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


def _form(content_type: str, body: bytes) -> tuple[dict[str, str], bool]:
    fields: dict[str, str] = {}
    has_file = False
    for part in _parts(body, _boundary(content_type)):
        if part.is_file:
            has_file = True
        elif part.name in _TEXT_FIELDS:
            fields[part.name] = _value(part)
    return fields, has_file


def with_model(req: VideoRequest, model: str) -> bytes:
    """The body to forward, its model the upstream's name for it."""
    if req.is_form:
        return _form_with_model(req.body, _boundary(req.content_type), model)
    fields: dict[str, msgspec.Raw] = msgspec.json.decode(req.body, type=dict[str, msgspec.Raw])
    fields["model"] = msgspec.Raw(msgspec.json.encode(model))
    return msgspec.json.encode(fields)


def _form_with_model(body: bytes, delimiter: bytes, model: str) -> bytes:
    model_part = b'\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + model.encode()
    out = [delimiter + model_part]
    out.extend(delimiter + p.raw for p in _parts(body, delimiter) if p.name != "model")
    return b"\r\n".join(out) + b"\r\n" + delimiter + b"--\r\n"


def _seconds(value: str | int | None) -> int:
    if value is None or value == "":
        return wire.DEFAULT_SECONDS
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"seconds must be a whole number of seconds (got {str(value)[:40]!r})", param="seconds"
        ) from None
    if not 1 <= seconds <= wire.MAX_SECONDS:
        raise InvalidRequest(f"seconds must be 1 to {wire.MAX_SECONDS} (got {seconds})", param="seconds")
    return seconds


def _size(value: str | None) -> str:
    if not value:
        return wire.DEFAULT_SIZE
    if not wire.SIZE.match(value):
        raise InvalidRequest(f"size must be WIDTHxHEIGHT, e.g. 1280x720 (got {value[:40]!r})", param="size")
    return value


def parse_create(content_type: str, body: bytes) -> VideoRequest:
    media = content_type.partition(";")[0].strip().lower()
    has_file = is_form = False
    if media == FORM:
        is_form = True
        fields, has_file = _form(content_type, body)
        create = wire.VideoCreate(
            fields.get("prompt", ""), fields.get("model"), fields.get("seconds"), fields.get("size")
        )
    elif media in ("application/json", "") or media.endswith("+json"):
        if not body.strip():
            raise InvalidRequest("the request body is empty; send a JSON object with a prompt")
        try:
            create = msgspec.json.decode(body, type=wire.VideoCreate)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"invalid request body: {exc}") from None
        except RecursionError:
            raise InvalidRequest(TOO_DEEP) from None
        content_type = "application/json"
    else:
        raise UnsupportedMediaType(f"unsupported content type `{content_type[:100]}`: send JSON or {FORM}")
    if not create.prompt.strip():
        raise InvalidRequest("prompt is required", param="prompt")
    return VideoRequest(
        create.prompt,
        create.model or wire.DEFAULT_MODEL,
        _seconds(create.seconds),
        _size(create.size),
        body,
        content_type,
        is_form,
        has_file,
    )


def parse_remix(body: bytes) -> str:
    if not body.strip():
        raise InvalidRequest('the request body is empty; send {"prompt": "..."}')
    try:
        prompt = msgspec.json.decode(body, type=wire.Remix).prompt
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except RecursionError:
        raise InvalidRequest(TOO_DEEP) from None
    if not prompt.strip():
        raise InvalidRequest("prompt is required", param="prompt")
    return prompt
