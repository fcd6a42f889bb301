"""Every console response, with the same security headers: a strict Content-Security-Policy
(scripts, styles and images from the gateway only, no inline script, no framing), no caching of
pages (they show private usage), no MIME sniffing, no referrer to other sites."""

from __future__ import annotations

from .web import Proto

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),  # no-referrer makes Chrome send `Origin: null` on our own forms
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
]
HTML = "text/html; charset=utf-8"
Headers = list[tuple[str, str]]


def send(proto: Proto, status: int, ctype: str, body: bytes, extra: Headers | None = None,
         cache: str = "no-store") -> None:
    headers = [("content-type", ctype), ("cache-control", cache), *SECURITY, *(extra or [])]
    proto.response_bytes(status, headers, body)


def html(proto: Proto, status: int, text: str, extra: Headers | None = None) -> None:
    send(proto, status, HTML, text.encode(), extra)


def redirect(proto: Proto, location: str, extra: Headers | None = None) -> None:
    """303: after a POST the browser GETs `location` (a path of ours, never a request's value)."""
    send(proto, 303, "text/plain; charset=utf-8", b"", [("location", location), *(extra or [])])


def file(proto: Proto, ctype: str, path: str, filename: str) -> None:
    headers = [("content-type", ctype), ("cache-control", "no-store"), *SECURITY,
               ("content-disposition", f'attachment; filename="{filename}"')]
    proto.response_file(200, headers, path)


def cookie(name: str, value: str, max_age: int, secure: bool) -> tuple[str, str]:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it),
    scoped to the console's paths; `Secure` when the console is served over https."""
    flags = f"Path=/console/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    return ("set-cookie", f"{name}={value}; {flags}{'; Secure' if secure else ''}")
