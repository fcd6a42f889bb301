"""Everything one worker process owns: live policy, upstream client, routing state, ledger."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Protocol

from ..alerts.events import Event, breaker_event, key_event
from ..billing.limits import Limiter, NoLimits
from ..config.reload import PolicyStore
from ..config.snapshot import ProviderRuntime
from ..ops.health import HealthStats
from ..providers.keyring import Bench, KeyRing
from ..providers.transport.base import UpstreamClient
from ..redact import mask_key
from ..routing.breaker import Breakers
from ..routing.select import RoundRobin
from ..tasks.engine import TaskEngine
from ..usage.record import UsageRecord
from ..worker_settings import WorkerSettings
from .disconnect import Watches

log = logging.getLogger("tollgate")


class Recorder(Protocol):
    def record(self, row: UsageRecord) -> None: ...


class NullRecorder:
    def record(self, row: UsageRecord) -> None:
        return None


class WorkerState:
    def __init__(
        self,
        settings: WorkerSettings,
        store: PolicyStore,
        client: UpstreamClient,
        recorder: Recorder | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.recorder: Recorder = recorder or NullRecorder()
        self.limiter: Limiter = limiter or NoLimits()
        self.breakers = Breakers(self._breaker_changed)
        self.health = HealthStats()  # per provider key: in flight, outcomes, latency (ops/health.py)
        self.alerts: Callable[[Event], None] | None = None  # the alert dispatcher's emit, once started
        self.budget_marks: dict[tuple[str, str], float] = {}  # budget_threshold: last mark per budget
        self.round_robin = RoundRobin()
        self.rng = random.Random()
        self.draining = False
        self.watches = Watches()
        self._keyrings: dict[str, KeyRing] = {}
        self.counters: dict[tuple[str, int], int] = {}
        self.tasks: TaskEngine | None = None  # the task store and poller (gateway/tasks/, server/tasks.py)

    @property
    def midjourney(self) -> TaskEngine | None:
        """Midjourney's tasks are the task engine's (the name its code and tests use)."""
        return self.tasks

    def keyring(self, provider: ProviderRuntime) -> KeyRing:
        ring = self._keyrings.get(provider.id)
        if ring is None or not ring.holds(provider.api_keys):  # a reload may change the keys
            ring = self._keyrings[provider.id] = KeyRing(provider.api_keys, self._key_listener(provider))
        return ring

    def keyrings(self) -> dict[str, KeyRing]:
        return dict(self._keyrings)

    def emit(self, event: Event) -> None:
        if self.alerts is not None:
            self.alerts(event)

    def _breaker_changed(self, provider: str, state: str, open_s: float) -> None:
        b = self.store.current.settings.routing.breaker
        self.emit(breaker_event(provider, state, open_s, b.failures, b.window_s, b.cooldown_s))

    def _key_listener(self, provider: ProviderRuntime) -> Callable[[str, int, Bench], None]:
        def changed(name: str, index: int, bench: Bench) -> None:
            until = None if math.isinf(bench.until) else time.time() + bench.until - time.monotonic()
            masked = mask_key(provider.api_keys[index]) if index < len(provider.api_keys) else "(none)"
            self.emit(key_event(name, provider.id, index, masked, bench.status, bench.reason, until))

        return changed

    def count(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        self.counters[key] = self.counters.get(key, 0) + 1
