"""Per-upstream circuit breaker: N failures within a window open it for a cool-down; then one
probe request is let through (half-open) and its outcome closes or re-opens the circuit.
Unlike disabling a channel on its first error, a recovered upstream comes back on its own."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..config.types import Breaker as BreakerSettings

# (new state "open" | "closed", seconds the circuit was open): health and alerts
BreakerListener = Callable[[str, float], None]


class Breaker:
    __slots__ = ("_failures", "_open_until", "_probing", "listener", "settings", "since")

    def __init__(self, settings: BreakerSettings, listener: BreakerListener | None = None) -> None:
        self.settings = settings
        self._failures: deque[float] = deque()
        self._open_until = 0.0
        self._probing = False
        self.listener = listener
        self.since = time.time()  # of the last change between closed and open

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
        if self._open_until:
            self._changed("closed")
        self._open_until = 0.0
        self._probing = False

    def _changed(self, state: str) -> None:
        now = time.time()
        open_s, self.since = now - self.since, now
        if self.listener is not None:
            self.listener(state, open_s)

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
            self._changed("open")


class Breakers:
    """Breakers by provider id, surviving policy reloads while the settings stay the same."""

    def __init__(self, listener: Callable[[str, str, float], None] | None = None) -> None:
        self._by_provider: dict[str, Breaker] = {}
        self.listener = listener  # (provider, state, seconds open)

    def get(self, provider: str, settings: BreakerSettings) -> Breaker:
        breaker = self._by_provider.get(provider)
        if breaker is None or breaker.settings != settings:
            breaker = self._by_provider[provider] = Breaker(settings, self._listener_for(provider))
        return breaker

    def _listener_for(self, provider: str) -> BreakerListener | None:
        listener = self.listener
        if listener is None:
            return None
        return lambda state, open_s: listener(provider, state, open_s)

    def all(self) -> dict[str, Breaker]:
        return dict(self._by_provider)

    def states(self) -> dict[str, str]:
        return {p: b.state() for p, b in self._by_provider.items()}
