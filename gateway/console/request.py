"""One console request as the pages see it, and what several pages share: refusals, forms,
cookies, whether a key may still sign in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from ..config.snapshot import KeyRuntime, Snapshot
from .session import Session
from .web import Proto, Scope, Worker


@dataclass(slots=True)
class Request:
    worker: Worker
    snap: Snapshot
    scope: Scope
    proto: Proto
    session: Session | None

    @property
    def secure(self) -> bool:
        """Served over https: the cookie gets `Secure`."""
        if getattr(self.scope, "scheme", "http") == "https":
            return True
        if not self.worker.settings.trust_forwarded:
            return False
        return str(self.scope.headers.get("x-forwarded-proto") or "").lower() == "https"


class Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def usable(key: KeyRuntime) -> bool:
    return not key.disabled and (key.expires is None or key.expires > datetime.now(UTC))


async def read_form(request: Request, limit: int = 16384) -> dict[str, str]:
    """A small urlencoded form (sign-in, logout); anything else is a 400 page."""
    ctype = str(request.scope.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Refused(400, "Bad request", "send the form as application/x-www-form-urlencoded")
    length = str(request.scope.headers.get("content-length") or "0")
    if not length.isdigit() or int(length) > limit:
        raise Refused(413, "Too large", "the form is too large")
    body = await request.proto()
    if len(body) > limit:
        raise Refused(413, "Too large", "the form is too large")
    try:
        return dict(parse_qsl(body.decode(), max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "Bad request", "the form could not be read") from None


def cookie_value(scope: Scope, name: str) -> str | None:
    header = str(scope.headers.get("cookie") or "")
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def same_origin(request: Request) -> bool:
    """A browser names the page that posted a form; it must be this host (no `Origin`: a client
    that is not a browser, or an old one; `null`: refused)."""
    origin = request.scope.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = str(request.scope.headers.get("host") or "")
    return str(origin).split("://", 1)[-1] == host


def client_ip(request: Request) -> str:
    """The client address, as the API's auth sees it (server/http.py client_ip)."""
    if request.worker.settings.trust_forwarded:
        forwarded = request.scope.headers.get("x-forwarded-for")
        if forwarded:
            return str(forwarded).split(",")[0].strip()
    client = str(request.scope.client or "")
    return (client.rsplit(":", 1)[0] if ":" in client else client).strip("[]")
