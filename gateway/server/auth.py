"""Client authentication: the presented key is hashed and looked up in the snapshot; the
plain key is dropped right after. Each refusal has its own message and code."""

from __future__ import annotations

from datetime import UTC, datetime

from ..config.snapshot import AdminRuntime, KeyRuntime, Snapshot
from ..errors import AuthError, PermissionDenied
from .rsgi import Scope


def presented_key(scope: Scope, extra_headers: tuple[str, ...] = ()) -> str | None:
    auth = scope.headers.get("authorization")
    if auth:
        scheme, _, token = str(auth).partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in extra_headers:
        value = scope.headers.get(name)
        if value:
            return str(value).strip()
    return None


def authenticate(snapshot: Snapshot, secret: str | None, ip: str) -> KeyRuntime:
    key = identify(snapshot, secret)
    check_ip(key, ip)
    return key


def identify(snapshot: Snapshot, secret: str | None) -> KeyRuntime:
    """The live key `secret` names (401 otherwise). Split from the IP check so that a request
    refused for its address is still recorded under the key that presented it."""
    if not secret:
        raise AuthError("no API key: send it as `Authorization: Bearer <key>`", code="missing_api_key")
    key = snapshot.key_for(secret)
    if key is None:
        raise AuthError("invalid API key", code="invalid_api_key")
    if key.disabled:
        raise AuthError(f"API key {key.id} is disabled", code="key_disabled")
    if key.expires is not None and key.expires <= datetime.now(UTC):
        raise AuthError(f"API key {key.id} expired at {key.expires.isoformat()}", code="key_expired")
    return key


def check_ip(key: KeyRuntime, ip: str) -> None:
    if not key.allows_ip(ip):
        raise PermissionDenied(f"API key {key.id} may not be used from {ip}", code="ip_not_allowed")


def authenticate_admin(snapshot: Snapshot, secret: str | None) -> AdminRuntime:
    if not secret:
        raise AuthError("no admin key: send it as `Authorization: Bearer <key>`", code="missing_api_key")
    admin = snapshot.admin_for(secret)
    if admin is None:
        raise AuthError("invalid admin key", code="invalid_api_key")
    return admin


def check_model(key: KeyRuntime, model: str) -> None:
    if not key.allows_model(model):
        raise PermissionDenied(
            f"API key {key.id} may not use model {model}", code="model_not_allowed", param="model"
        )
