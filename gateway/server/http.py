"""RSGI plumbing: request body with a size limit, client address, JSON and error responses
in the client's API shape (OpenAI by default; Anthropic and Gemini on their native paths)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import BodyTooLarge, GatewayError

Headers = list[tuple[str, str]]
JSON = "application/json"

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


async def read_body(scope: Any, proto: Any, limit: int) -> bytes:
    length = scope.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"request body of {length} bytes is over the limit of {limit} bytes")
    body: bytes = await proto()
    if len(body) > limit:
        raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    return body


def client_ip(scope: Any, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = scope.headers.get("x-forwarded-for")
        if forwarded:
            return str(forwarded).split(",")[0].strip()
    client = str(scope.client or "")
    host = client.rsplit(":", 1)[0] if ":" in client else client
    return host.strip("[]")


def error_body(err: GatewayError, family: str = "openai") -> bytes:
    if family == "anthropic":
        kind = _ANTHROPIC_TYPE.get(err.status, "api_error")
        return msgspec.json.encode({"type": "error", "error": {"type": kind, "message": err.message}})
    if family == "gemini":
        status = _GEMINI_STATUS.get(err.status, "INTERNAL")
        return msgspec.json.encode({"error": {"code": err.status, "message": err.message, "status": status}})
    return msgspec.json.encode(
        {"error": {"message": err.message, "type": err.type, "code": err.code, "param": err.param}}
    )


def send_json(proto: Any, status: int, doc: Any, headers: Headers | None = None) -> None:
    out = [("content-type", JSON)]
    if headers:
        out.extend(headers)
    proto.response_bytes(status, out, msgspec.json.encode(doc))


def send_error(proto: Any, err: GatewayError, family: str = "openai", headers: Headers | None = None) -> None:
    out = [("content-type", JSON), *err.headers]
    if headers:
        out.extend(headers)
    proto.response_bytes(err.status, out, error_body(err, family))
