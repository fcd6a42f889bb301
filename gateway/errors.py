"""Typed errors of the request path, turned into HTTP responses at one boundary (server/app.py).

GatewayError
├── ClientError                 4xx: the client can fix it
│   ├── InvalidRequest          400 malformed JSON, wrong types, missing model
│   ├── BodyTooLarge            413
│   ├── AuthError               401 missing / unknown / expired / disabled key
│   ├── PermissionDenied        403 IP or model not allowed, denied by a rule
│   ├── NotFound                404 unknown path or model
│   ├── MethodNotAllowed        405 a POST-only path asked with another method
│   ├── UnsupportedMediaType    415 a body that is not of the endpoint's content type
│   ├── BodyTimeout             408 the body did not arrive in time
│   ├── BodyCut                 499 the client went away before the end of its body
│   └── RateLimited             429 (Retry-After)
│       └── BudgetExceeded      429 insufficient_quota
├── LimitsUnavailable           503 the limit state store is unreachable (fail closed)
└── UpstreamError               the providers failed (status preserved where meaningful)

Every error class is defined here, not in the compiled request path (gateway/compiled.py):
mypyc does not apply class-level overrides (`status = 408`) of a class it compiles.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = headers


class ClientError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(ClientError):
    pass


class BodyTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class AuthError(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class BodyCut(ClientError):
    """The client went away before the end of its body: nobody is left to answer."""

    status = 499
    code = "client_disconnected"


class MalformedBody(InvalidRequest):
    code = "malformed_body"


class BodyTimeout(ClientError):
    status = 408
    code = "request_timeout"


class BudgetExceeded(RateLimited):
    """429 like OpenAI's quota error; `x-should-retry: false` stops SDKs retrying it."""

    type = "insufficient_quota"
    code = "budget_exceeded"


class LimitsUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "limits_unavailable"
