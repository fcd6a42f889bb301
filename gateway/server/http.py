"""RSGI plumbing: request body (read by intake.py; for JSON endpoints, its content type and
UTF-8 checked here), client address, JSON and error responses in the client's API shape (OpenAI by
default; Anthropic, Gemini and midjourney-proxy on their own paths)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import msgspec

from ..errors import GatewayError, InvalidRequest, UnsupportedMediaType
from .rsgi import Proto, Scope

Headers = list[tuple[str, str]]
JSON = "application/json"

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",  # a prepaid key's credits are spent
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
    529: "overloaded_error",
}
# midjourney-proxy result codes for the gateway's own refusals (the HTTP status tells them apart)
_MJ_CODES = {400: 4, 401: 4, 403: 4, 404: 3, 405: 4, 408: 4, 413: 4, 415: 4, 429: 23, 499: 4}
# Gemini's verbs, also served under /v1/models/{model}:{verb} (google-genai's api_version="v1");
# OpenAI model ids may hold colons too (ft:...), but never end in one of these.
GEMINI_VERBS = frozenset(
    {"generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"}
)


# Read as JSON too, as the OpenAI API and other gateways do: `curl -d` sends form-urlencoded and
# some HTTP libraries text/plain. The body must still parse as JSON; it goes upstream as JSON.
LENIENT_JSON = frozenset({"", JSON, "text/plain", "application/x-www-form-urlencoded"})


def json_body(scope: Scope, body: bytes) -> bytes:
    """`body` once it may be a JSON request: no content type, a JSON one or a lenient one (415
    otherwise, e.g. multipart or XML), and valid UTF-8 (msgspec checks only the strings it
    decodes, not the fields it skips)."""
    ctype = str(scope.headers.get("content-type") or "")
    media = ctype.partition(";")[0].strip().lower()
    if media not in LENIENT_JSON and not media.endswith("+json"):
        raise UnsupportedMediaType(f"unsupported content type `{ctype[:100]}`: send the body as {JSON}")
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the request body is not valid UTF-8 (byte {exc.start})") from None
    return body


def family_of(path: str) -> str:
    """The error shape of a path: its API family's."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1beta/") or (
        path.startswith("/v1/models/") and unquote(path).rpartition(":")[2] in GEMINI_VERBS
    ):
        return "gemini"
    if "/mj/" in path and not path.startswith("/v1"):
        return "midjourney"
    if path.startswith("/suno/"):
        return "suno"
    return "openai"


def client_ip(scope: Scope, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = scope.headers.get("x-forwarded-for")
        if forwarded:
            return str(forwarded).split(",")[0].strip()
    client = str(scope.client or "")
    host = client.rsplit(":", 1)[0] if ":" in client else client
    return host.strip("[]")


def mj_error_doc(err: GatewayError) -> dict[str, Any]:
    code = _MJ_CODES.get(err.status, 9)
    return {"code": code, "description": err.message, "result": None, "properties": {"error": err.code}}


def error_body(err: GatewayError, family: str = "openai") -> bytes:
    if family == "midjourney":
        return msgspec.json.encode(mj_error_doc(err))
    if family == "suno":  # New API's task relay shape
        return msgspec.json.encode({"code": err.code or err.type, "message": err.message, "data": None})
    if family == "anthropic":
        kind = _ANTHROPIC_TYPE.get(err.status, "api_error")
        return msgspec.json.encode({"type": "error", "error": {"type": kind, "message": err.message}})
    if family == "gemini":
        status = _GEMINI_STATUS.get(err.status, "INTERNAL")
        return msgspec.json.encode({"error": {"code": err.status, "message": err.message, "status": status}})
    return msgspec.json.encode(
        {"error": {"message": err.message, "type": err.type, "code": err.code, "param": err.param}}
    )


def send_json(proto: Proto, status: int, doc: Any, headers: Headers | None = None) -> None:
    out = [("content-type", JSON)]
    if headers:
        out.extend(headers)
    proto.response_bytes(status, out, msgspec.json.encode(doc))


def send_error(
    proto: Proto, err: GatewayError, family: str = "openai", headers: Headers | None = None
) -> None:
    out = [("content-type", JSON), *err.headers]
    if headers:
        out.extend(headers)
    proto.response_bytes(err.status, out, error_body(err, family))
