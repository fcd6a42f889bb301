"""Each worker's alert dispatcher: `emit` is what the request path calls (a breaker opens, a key
is benched): it only puts the event on a bounded queue, never waits, never raises. A background
task takes events, matches them against the live bundle's `[[alert]]` entries (`on`, then the
CEL `when`), deduplicates per alert and subject, and delivers each in its own task, so that a
slow or dead webhook delays nothing but its own retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..config.alerts import AlertRuntime
from ..policy.cel import CelEvalError
from ..providers.transport.base import UpstreamClient
from ..redact import Redactor
from .events import Event
from .log import AlertLog, Dedup
from .webhook import deliver

log = logging.getLogger("tollgate.alerts")
QUEUE_SIZE = 1024


def matches(alert: AlertRuntime, event: Event) -> bool:
    if alert.on != event.name:
        return False
    if alert.when is None:
        return True
    doc = event.document()
    try:
        return alert.when.evaluate(lambda _root, name: doc if name is None else doc.get(name)) is True
    except CelEvalError as exc:
        log.warning("alert %s: `when` failed on %s (%s): not sent", alert.id, event.name, exc)
        return False


class Dispatcher:
    def __init__(self, alerts: Callable[[], tuple[AlertRuntime, ...]], redactor: Callable[[], Redactor],
                 client: UpstreamClient, alert_log: AlertLog, dedup: Dedup) -> None:
        self.alerts, self.redactor, self.client = alerts, redactor, client
        self.log, self.dedup = alert_log, dedup
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.delivered = self.failed = 0
        self._deliveries: set[asyncio.Task[bool]] = set()
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: Event) -> None:
        """Called on the event loop's thread, from anywhere; costs a queue append."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._deliveries):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                self.dispatch(event)
            except Exception:  # a bug here must not stop later alerts
                log.exception("alert dispatch of %s failed", event.name)

    def dispatch(self, event: Event) -> list[asyncio.Task[bool]]:
        started = []
        for alert in self.alerts():
            if matches(alert, event) and self.dedup.first(alert.id, event.subject, alert.dedup_s):
                task = asyncio.get_running_loop().create_task(self._deliver(alert, event))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
                started.append(task)
        return started

    async def _deliver(self, alert: AlertRuntime, event: Event) -> bool:
        ok = await deliver(alert, event, self.client, self.log, self.redactor())
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning("alert %s (%s): webhook gave up after %d attempt(s)", alert.id, event.name,
                        alert.attempts)
        return ok
