"""Rotation over a provider's api_keys; a key answered with 401/403 is benched for a while.

A provider without keys (a local vLLM, Ollama...) has one pseudo-key, "": it is tried like any
key, so a refusal ends the rotation instead of retrying the same request forever."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..routing.affinity import pinned_keys

_KEYLESS = ("",)


class KeyRing:
    __slots__ = ("_benched", "_next", "keys")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys or _KEYLESS
        self._next = 0
        self._benched: dict[int, float] = {}

    def rotation(self, affinity: str | None = None) -> Iterator[str]:
        """The keys to try for one request: each usable key at most once, starting one further
        on each request (round robin), or, with an affinity key, in its pinned order."""
        n = len(self.keys)
        start, self._next = self._next, self._next + 1
        seen: set[str] = set()  # a key listed twice is still one key
        order = pinned_keys(self.keys, affinity) if affinity is not None and n > 1 else None
        for k in range(n):
            i = order[k] if order is not None else (start + k) % n
            key = self.keys[i]
            if key in seen or self._benched.get(i, 0.0) > time.monotonic():
                continue
            seen.add(key)
            yield key

    def bench(self, key: str, seconds: float = 300.0) -> None:
        if self.keys is _KEYLESS:
            return  # nothing to rotate to: benching would refuse the provider outright
        for i, k in enumerate(self.keys):
            if k == key:
                self._benched[i] = time.monotonic() + seconds
