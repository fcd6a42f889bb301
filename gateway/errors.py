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
│   └── RateLimited             429 (Retry-After)
└── UpstreamError               the providers failed (status preserved where meaningful)
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
