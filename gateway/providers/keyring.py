"""Rotation over a provider's api_keys; a key answered with 401/403 is benched for a while.

A provider without keys (a local vLLM, Ollama...) has one pseudo-key, "": it is tried like any
key, so a refusal ends the rotation instead of retrying the same request forever."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..routing.affinity import pinned_keys

_KEYLESS = ("",)
# (event, key index, the bench) for key_benched / key_restored: health and alerts (gateway/alerts/)
KeyListener = Callable[[str, int, "Bench"], None]


@dataclass(slots=True)
class Bench:
    """Why and until when a key is benched; `until_test`: until a provider test passes."""

    until: float  # time.monotonic(); math.inf until a test passes
    reason: str = ""  # the upstream's message, secrets already masked
    status: int = 0
    since: float = 0.0  # time.time()
    until_test: bool = False
    last_test: float = 0.0  # time.monotonic() of the last re-test


class KeyRing:
    __slots__ = ("_benched", "_next", "benches", "index", "keyless", "keys", "listener")

    def __init__(self, keys: tuple[str, ...], listener: KeyListener | None = None) -> None:
        self.keys = keys or _KEYLESS
        # a flag, not `keys is _KEYLESS`: compiled (mypyc), a fixed-size tuple constant is a new
        # object at every read
        self.keyless = not keys
        self._next = 0
        self._benched: dict[int, float] = {}
        self.benches: dict[int, Bench] = {}  # the why of `_benched` (read off the request path)
        self.index = {k: i for i, k in reversed(list(enumerate(self.keys)))}
        self.listener = listener

    def holds(self, keys: tuple[str, ...]) -> bool:
        """Whether this ring is the one for these keys (a keyless provider's ring holds "")."""
        return self.keys == (keys or _KEYLESS)

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

    def bench(self, key: str, seconds: float = 300.0, *, reason: str = "", status: int = 0,
              until_test: bool = False) -> None:
        if self.keyless:
            return  # nothing to rotate to: benching would refuse the provider outright
        until = math.inf if until_test else time.monotonic() + seconds
        for i, k in enumerate(self.keys):
            if k == key:
                fresh = self._benched.get(i, 0.0) <= time.monotonic()
                self._benched[i] = until
                bench = self.benches[i] = Bench(until, reason, status, time.time(), until_test,
                                                time.monotonic())
                if fresh and self.listener is not None:
                    self.listener("key_benched", i, bench)

    def restore(self, index: int, reason: str) -> bool:
        """Put a benched key back in rotation (a test passed); False when it was not benched."""
        bench = self.benches.pop(index, None)
        self._benched.pop(index, None)
        if bench is None:
            return False
        bench.reason = reason
        if self.listener is not None:
            self.listener("key_restored", index, bench)
        return True

    def expire(self) -> list[int]:
        """Restore the keys whose timed bench has run out (called off the request path)."""
        now = time.monotonic()
        done = [i for i, b in self.benches.items() if b.until <= now]
        for i in done:
            self.restore(i, "bench time over")
        return done
