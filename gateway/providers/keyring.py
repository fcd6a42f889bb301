"""Rotation over a provider's api_keys; a key answered with 401/403 is benched for a while.

A provider without keys (a local vLLM, Ollama...) has one pseudo-key, "": it is tried like any
key, so a refusal ends the rotation instead of retrying the same request forever."""

from __future__ import annotations

import time
from collections.abc import Iterator

_KEYLESS = ("",)


class KeyRing:
    __slots__ = ("_benched", "_next", "keys")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys or _KEYLESS
        self._next = 0
        self._benched: dict[int, float] = {}

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The next usable key, round robin; None when every key is benched or excluded."""
        now = time.monotonic()
        for _ in range(len(self.keys)):
            i = self._next % len(self.keys)
            self._next += 1
            until = self._benched.get(i)
            if until is not None and until > now:
                continue
            if self.keys[i] in exclude:
                continue
            return self.keys[i]
        return None

    def rotation(self) -> Iterator[str]:
        """Each usable key at most once, round robin: the keys to try for one request."""
        if len(self.keys) == 1:  # most providers: no set, no scan
            until = self._benched.get(0)
            if until is None or until <= time.monotonic():
                yield self.keys[0]
            return
        tried: set[str] = set()
        while (key := self.pick(frozenset(tried))) is not None:
            tried.add(key)
            yield key

    def bench(self, key: str, seconds: float = 300.0) -> None:
        if self.keys is _KEYLESS:
            return  # nothing to rotate to: benching would refuse the provider outright
        for i, k in enumerate(self.keys):
            if k == key:
                self._benched[i] = time.monotonic() + seconds

    def usable(self) -> int:
        now = time.monotonic()
        return sum(1 for i in range(len(self.keys)) if self._benched.get(i, 0) <= now)
