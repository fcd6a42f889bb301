"""Each worker's provider watch, a background task that runs about once a second, off the
request path: it publishes this worker's provider health (ops/health_merge.py), restores keys
whose timed bench ran out, re-tests keys benched by `disable_on` every `retest_every_s` (ops/
probe.py; a pass restores the key), notices a failed policy reload and recent upstream errors,
and owns the alert dispatcher (alerts/dispatcher.py) the request path emits events to.
(docs/architecture.md, "Provider operations and alerts")"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from pathlib import Path
from typing import Any

from ..alerts.dispatcher import Dispatcher
from ..alerts.events import Event
from ..alerts.log import AlertLog, Dedup
from ..config.snapshot import ProviderRuntime, Snapshot
from ..ops.health import worker_document
from ..ops.health_merge import publish, withdraw
from ..ops.probe import probe_provider
from ..providers.keyring import KeyRing
from ..providers.transport.clients import make_upstream_client
from .state import WorkerState

log = logging.getLogger("tollgate.providers")
INTERVAL_S = 1.0
ERROR_WINDOW_S = 60.0  # upstream_error_rate looks this far back
ERROR_EVERY_S = 10.0  # and is emitted at most this often per provider
RESTORED = "provider test passed"


class ProviderWatch:
    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.data_dir = Path(state.settings.data_dir)
        self.client = make_upstream_client("h1", 16)  # webhooks and re-tests: not the relay's pool
        self.dispatcher = Dispatcher(lambda: state.store.current.alerts, lambda: state.store.current.redactor,
                                     self.client, AlertLog(self.data_dir), Dedup(self.data_dir))
        self._reload_error_at = state.store.last_error_at
        self._rate_at: dict[str, float] = {}
        self._retesting: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0

    def start(self) -> None:
        self.dispatcher.start()
        self.state.alerts = self.dispatcher.emit
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        self.state.alerts = None
        for task in [self._task, *self._retesting.values()]:
            if task is not None:
                task.cancel()
        await self.dispatcher.stop()
        withdraw(self.data_dir)
        await self.client.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not end the watch
                log.exception("provider watch failed")
            await asyncio.sleep(INTERVAL_S)

    def tick(self) -> None:
        snap = self.state.store.current
        self._ticks += 1
        self._reload_failed()
        for ring in self.state.keyrings().values():
            ring.expire()
        self._retest(snap)
        self._error_rates(snap)
        publish(self.data_dir, self.document(snap))
        if self._ticks % 600 == 1:
            self.dispatcher.dedup.sweep()

    def document(self, snap: Snapshot) -> dict[str, Any]:
        state = self.state
        return worker_document(snap.providers, state.breakers.all(), state.keyrings(), state.health)

    def _reload_failed(self) -> None:
        store = self.state.store
        if store.last_error_at is None or store.last_error_at == self._reload_error_at:
            return
        self._reload_error_at = store.last_error_at
        message = str(store.last_error[0]) if store.last_error else "unknown problem"
        fields = {"directory": str(store.directory), "problems": len(store.last_error), "message": message}
        self.state.emit(Event("reload_failed", fields, str(store.directory)))

    def _error_rates(self, snap: Snapshot) -> None:
        if self._ticks % int(ERROR_EVERY_S / INTERVAL_S):
            return  # looked at every ERROR_EVERY_S: it walks every key's recent outcomes
        now = time.monotonic()
        for pid in snap.providers:
            if now - self._rate_at.get(pid, -ERROR_EVERY_S) < ERROR_EVERY_S:
                continue
            requests, errors = self.state.health.error_rate(pid, ERROR_WINDOW_S)
            if errors:
                self._rate_at[pid] = now
                fields = {"provider": pid, "error_rate": round(errors / requests, 4), "requests": requests,
                          "errors": errors, "window_s": ERROR_WINDOW_S}
                self.state.emit(Event("upstream_error_rate", fields, pid))

    def _retest(self, snap: Snapshot) -> None:
        now = time.monotonic()
        for pid, ring in self.state.keyrings().items():
            provider = snap.providers.get(pid)
            if provider is None:
                continue
            for index, bench in list(ring.benches.items()):
                due = bench.until_test and now - bench.last_test >= provider.spec.retest_every_s
                if due and (pid, index) not in self._retesting:
                    bench.last_test = now
                    task = asyncio.get_running_loop().create_task(self._test(provider, ring, index))
                    self._retesting[(pid, index)] = task
                    task.add_done_callback(functools.partial(self._tested, (pid, index)))

    def _tested(self, key: tuple[str, int], _task: asyncio.Task[None]) -> None:
        self._retesting.pop(key, None)

    async def _test(self, provider: ProviderRuntime, ring: KeyRing, index: int) -> None:
        redactor = self.state.store.current.redactor
        results = await probe_provider(provider, self.client, redactor, indexes=[index])
        if passed(results):
            restore(self.state, provider, ring, index)
        else:
            log.info("provider %s key #%d: re-test failed: %s", provider.id, index,
                     "; ".join(r.error or f"HTTP {r.status}" for r in results if not r.ok))


def restore(state: WorkerState, provider: ProviderRuntime, ring: KeyRing, index: int) -> None:
    """A key passed a test: back in rotation, and the provider's breaker closed (the test was a
    request the upstream answered, as a half-open probe would be)."""
    ring.restore(index, RESTORED)
    breaker = state.breakers.all().get(provider.id)
    if breaker is not None and breaker.state() != "closed":
        breaker.success()


def passed(results: list[Any]) -> bool:
    """Every test of a key answered (skipped kinds do not count as a pass)."""
    return bool(results) and all(r.ok for r in results)


async def stop_quietly(watch: ProviderWatch | None) -> None:
    if watch is not None:
        with contextlib.suppress(Exception):
            await watch.stop()
