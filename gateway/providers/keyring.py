"""Rotation over a provider's api_keys; a key answered with 401/403 is benched for a while."""

from __future__ import annotations

import time


class KeyRing:
    __slots__ = ("_benched", "_next", "keys")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._next = 0
        self._benched: dict[int, float] = {}

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The next usable key, round robin; None when every key is benched or excluded."""
        if not self.keys:
            return ""
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

    def bench(self, key: str, seconds: float = 300.0) -> None:
        for i, k in enumerate(self.keys):
            if k == key:
                self._benched[i] = time.monotonic() + seconds

    def usable(self) -> int:
        now = time.monotonic()
        return sum(1 for i in range(len(self.keys)) if self._benched.get(i, 0) <= now)
