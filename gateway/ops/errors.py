"""What an upstream error body says: its message and its code (OpenAI's `error.code` /
`error.type`, Anthropic's `error.type`, Gemini's `error.status`), secrets masked. The relay
matches the code against a provider's `disable_on`; tests and alerts show the message."""

from __future__ import annotations

from typing import Any

import msgspec

from ..redact import Redactor


class _ErrorDoc(msgspec.Struct):
    error: Any = None
    message: str | None = None


def error_parts(raw: bytes, redactor: Redactor) -> tuple[str, tuple[str, ...]]:
    """(message, codes): the message masked and cut to 500 characters; every code-like field."""
    text = raw[:2000].decode("utf-8", "replace")
    codes: list[str] = []
    try:
        doc = msgspec.json.decode(raw, type=_ErrorDoc)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return redactor.text(text)[:500], ()
    err = doc.error
    if isinstance(err, dict):
        codes = [str(err[f]) for f in ("code", "type", "status") if isinstance(err.get(f), str | int)]
        text = str(err.get("message") or doc.message or text)
    elif isinstance(err, str):
        text = err
    elif doc.message:
        text = doc.message
    return redactor.text(text)[:500], tuple(codes)


def error_detail(raw: bytes, redactor: Redactor) -> str:
    return error_parts(raw, redactor)[0] or "no response body"
