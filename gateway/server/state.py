"""Everything one worker process owns: live policy, upstream client, routing state, ledger."""

from __future__ import annotations

import logging
import random
from typing import Protocol

from ..billing.limits import Limiter, NoLimits
from ..config.reload import PolicyStore
from ..config.snapshot import ProviderRuntime
from ..midjourney.tasks import MjRuntime
from ..providers.keyring import KeyRing
from ..providers.transport.base import UpstreamClient
from ..routing.breaker import Breakers
from ..routing.select import RoundRobin
from ..settings import ServeSettings
from ..usage.record import UsageRecord
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
        settings: ServeSettings,
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
        self.breakers = Breakers()
        self.round_robin = RoundRobin()
        self.rng = random.Random()
        self.draining = False
        self.watches = Watches()
        self._keyrings: dict[str, KeyRing] = {}
        self.counters: dict[tuple[str, int], int] = {}
        self.midjourney: MjRuntime | None = None  # tasks store and poller (midjourney/tasks.py)

    def keyring(self, provider: ProviderRuntime) -> KeyRing:
        ring = self._keyrings.get(provider.id)
        if ring is None or ring.keys != provider.api_keys:
            ring = self._keyrings[provider.id] = KeyRing(provider.api_keys)
        return ring

    def count(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        self.counters[key] = self.counters.get(key, 0) + 1
