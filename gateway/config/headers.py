"""Upstream header tables of a bundle (a provider's `headers`, a rule's `set_headers`): names
lower-cased, valid, not owned by the gateway; values on one line."""

from __future__ import annotations

import re

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# A field value on one line (RFC 9110): tab, visible ASCII, space, obs-text; no CR/LF, which would
# end the header line in the upstream request.
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
# Headers the gateway owns on every upstream request: a bundle may not set them, in a provider's
# `headers` or a rule's `set_headers`. Credentials come from the provider's api_keys (sent as one
# of these by its adapter, and rotated/benched per key); the rest frame the message or belong to
# one connection (hop-by-hop, RFC 9110 7.6.1), or keep the relay byte-exact (the client's body
# type, an identity-encoded answer).
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "mj-api-secret", "proxy-authorization"}
)
GATEWAY_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "content-type",
        "accept-encoding",
    }
)


def check_headers(items: list[tuple[str, str]]) -> tuple[tuple[tuple[str, str], ...], list[tuple[str, str]]]:
    """(name, value) pairs with lower-case names, and (name, message) problems. HTTP names are
    case-insensitive, so `X-Foo` and `x-foo` must not both reach the upstream, and a later table
    overrides an earlier one's header by plain dict update: two spellings in a table are an error."""
    spelled: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for name, value in items:
        lower = name.lower()
        problem = _problem(name, lower, value, spelled)
        if problem:
            problems.append((name, problem))
        spelled.setdefault(lower, name)
        out.append((lower, value))
    return tuple(out), problems


def _problem(name: str, lower: str, value: str, spelled: dict[str, str]) -> str | None:
    if not _HEADER_NAME.match(name):
        return f'"{name}" is not a valid header name'
    if lower in spelled:
        return (f'"{name}" is the same header as "{spelled[lower]}" '
                "(header names are case-insensitive); keep one")
    if lower in CREDENTIAL_HEADERS:
        return (f'"{name}" carries credentials, which the gateway sets from the provider\'s api_keys; '
                "it cannot be set here")
    if lower in GATEWAY_HEADERS:
        return f'"{name}" is set by the gateway on every upstream request; it cannot be set here'
    if not _HEADER_VALUE.match(value):  # the value may hold a secret: not quoted
        return "a header value must be one line of text (no CR, LF or control characters)"
    return None
