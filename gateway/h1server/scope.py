"""A request's RSGI scope and its headers, as granian 2.8 shows them: lower-case header names in
arrival order, `get` the first value, `get_all` every one; `path` percent-decoded, `query_string`
as sent; `client` and `server` as "host:port"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote


class HeaderMap:
    """The request's headers: a dict of first values for `get`, the pairs for the rest."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        first: dict[str, str] = {}
        for name, value in pairs:
            if name not in first:
                first[name] = value
        self._first = first

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key, default)

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self._pairs if k == key]

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def keys(self) -> list[str]:
        return list(self._first)

    def values(self) -> list[str]:
        return [v for _, v in self._pairs]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


class HttpScope:
    __slots__ = ("client", "headers", "http_version", "method", "path", "proto", "query_string",
                 "server")
    rsgi_version = "1.5"
    scheme = "http"
    authority = None

    def __init__(self, proto: str, http_version: str, method: str, target: bytes, headers: HeaderMap,
                 client: str, server: str) -> None:
        self.proto = proto
        self.http_version = http_version
        self.method = method
        self.headers = headers
        self.client = client
        self.server = server
        path, _, query = target.partition(b"?")
        if path[:1] != b"/" and b"://" in path:  # absolute form (RFC 9112 3.2.2): the path only
            path = b"/" + path.split(b"://", 1)[1].partition(b"/")[2]
        text = path.decode("latin-1")
        # percent-decoded like granian's (a Gemini client may send `%3A` for the method's colon)
        self.path = unquote(text) if "%" in text else text
        self.query_string = query.decode("latin-1")


def address(peer: Any) -> str:
    """"host:port" of a socket address (IPv6 in brackets, as granian writes it)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer or "")
