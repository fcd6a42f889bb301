"""Per-upstream circuit breaker: N failures within a window open it for a cool-down; then one
probe request is let through (half-open) and its outcome closes or re-opens the circuit.
Unlike disabling a channel on its first error, a recovered upstream comes back on its own."""

from __future__ import annotations

import time
from collections import deque

from ..config.types import Breaker as BreakerSettings


class Breaker:
    __slots__ = ("_failures", "_open_until", "_probing", "settings")

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._failures: deque[float] = deque()
        self._open_until = 0.0
        self._probing = False

    def state(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self._open_until == 0.0:
            return "closed"
        return "open" if now < self._open_until or self._probing else "half-open"

    def allow(self) -> bool:
        """May a request go to this upstream now? Taking the half-open probe claims it."""
        state = self.state()
        if state == "closed":
            return True
        if state == "half-open":
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures.clear()
        self._open_until = 0.0
        self._probing = False

    def failure(self) -> None:
        now = time.monotonic()
        s = self.settings
        if self._probing or self._open_until:
            self._probing = False
            self._open_until = now + s.cooldown_s
            return
        self._failures.append(now)
        while self._failures and self._failures[0] < now - s.window_s:
            self._failures.popleft()
        if len(self._failures) >= s.failures:
            self._open_until = now + s.cooldown_s
            self._failures.clear()


class Breakers:
    """Breakers by provider id, surviving policy reloads while the settings stay the same."""

    def __init__(self) -> None:
        self._by_provider: dict[str, Breaker] = {}

    def get(self, provider: str, settings: BreakerSettings) -> Breaker:
        breaker = self._by_provider.get(provider)
        if breaker is None or breaker.settings != settings:
            breaker = self._by_provider[provider] = Breaker(settings)
        return breaker

    def states(self) -> dict[str, str]:
        return {p: b.state() for p, b in self._by_provider.items()}
