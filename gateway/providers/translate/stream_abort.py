"""The last event of a stream the upstream cut short (reset, read timeout): an error in the
client's own streaming format, so that SDKs raise at once instead of waiting for their own
timeout, and a truncated answer never looks complete.

- OpenAI chat/completions: `data: {"error": {...}}` (the openai SDKs raise on an `error` key)
- OpenAI Responses: `event: error` with the Responses error event (type, code, message, param,
  sequence_number)
- Anthropic Messages: `event: error` with `{"type": "error", "error": {...}}`
- Gemini: `data: {"error": {"code", "message", "status"}}` (google-genai raises on a chunk that
  starts with `{"error":`); the JSON-array stream shape turns it into the array's last element
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..wire.sse import frame

CUT_CODE = "upstream_stream_cut"


def cut_event(client_family: str, endpoint: str, message: str, tap: Any) -> bytes:
    if client_family == "anthropic":
        return frame(_json({"type": "error", "error": {"type": "api_error", "message": message}}), "error")
    if client_family == "gemini":
        return frame(_json({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}))
    if endpoint == "responses":
        doc = {"type": "error", "code": CUT_CODE, "message": message, "param": None,
               "sequence_number": int(getattr(tap, "sequence", 0))}
        return frame(_json(doc), "error")
    error = {"message": message, "type": "upstream_error", "code": CUT_CODE, "param": None}
    return frame(_json({"error": error}))


def _json(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)
