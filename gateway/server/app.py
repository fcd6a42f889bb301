"""The RSGI application: per-worker start and stop; every request goes through the route table
(routes.py) into the one envelope (envelope.py).
(docs/architecture.md, "The request path", step 1)"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

from ..billing.setup import make_limiter
from ..config.reload import PolicyStore
from ..core.sweep import stop_sweeps
from ..providers.transport.clients import make_upstream_client
from ..redact import redact_logs
from ..usage.credits_client import LedgerCredits
from ..usage.ledger import Ledger
from ..worker_settings import Dumps, WorkerSettings, as_worker_settings, checked_settings
from . import tasks
from .envelope import serve
from .midjourney.poller import MidjourneyTasks
from .provider_watch import ProviderWatch, stop_quietly
from .realtime.endpoint import serve_ws
from .routes import find
from .rsgi import Proto, Scope
from .state import Recorder, WorkerState
from .suno.endpoints import SunoTasks
from .threads import BatchThreads
from .videos.adapter import VideoTasks

log = logging.getLogger("tollgate")
GC_YOUNG_THRESHOLD = 20_000


class App:
    """`__rsgi_init__` / `__rsgi_del__` run once per granian worker process."""

    def __init__(self) -> None:
        self.state: WorkerState | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watch: ProviderWatch | None = None
        self._batch: BatchThreads | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        state = loop.run_until_complete(self.start())
        if state.settings.batch_threads:  # only in a granian worker: its threads are granian's
            self._batch = BatchThreads(loop)
            self._batch.start()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._batch is not None:
            self._batch.stop()
        loop.run_until_complete(self.stop())

    async def start(
        self, settings: WorkerSettings | Dumps | None = None, recorder: Recorder | None = None
    ) -> WorkerState:
        settings = as_worker_settings(settings) if settings else checked_settings() or _read_settings()
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        data_dir = Path(settings.data_dir)
        store = PolicyStore.open(Path(settings.policies), last_good_dir=data_dir / "last-good-policies")
        redact_logs(lambda: store.current.redactor)  # no configured secret reaches the log
        store.start_watching(settings.reload_debounce_ms)
        ledger: Ledger | None = None
        if recorder is None and settings.ledger:
            ledger = Ledger(
                data_dir, lambda: store.current.settings.usage.retention_days, settings.ledger_interval_s
            )
            await ledger.start()
            recorder = ledger
        limiter = await make_limiter(settings, ledger, LedgerCredits(ledger) if ledger is not None else None)
        self.state = WorkerState(
            settings, store, make_upstream_client(settings.transport, settings.pool_size), recorder, limiter
        )
        self._sweeper = asyncio.get_running_loop().create_task(self.state.watches.sweep())
        # the task store and its poller (gateway/tasks/), with every task family's adapter
        state = self.state
        await tasks.start(state, [MidjourneyTasks(state), VideoTasks(state), SunoTasks(state)])
        self._watch = ProviderWatch(self.state)  # health files, re-tests, alerts (off the request path)
        self._watch.start()
        # Everything loaded so far (modules, the policy snapshot, clients) lives as long as the
        # worker: keep it out of the collector's generations, so a collection does not walk it
        # (measured: request latency's spread halves, ~3-8% more requests/s at c=16-64).
        gc.collect()
        gc.freeze()
        # Requests in flight hold hundreds of live objects each (the collector counts
        # allocations net of frees): at the default threshold (700), 16-64 requests in flight
        # kept triggering young collections that walked them all. Raised: CPU per request
        # 208 -> 199 µs (benchmark bundle, c=16, one core); cycles are still collected.
        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
        return self.state

    async def stop(self) -> None:
        state = self.state
        if state is None:
            return
        state.draining = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        stop_sweeps(asyncio.get_running_loop())  # body and upstream deadlines
        await state.store.stop_watching()
        await tasks.stop(state)
        await stop_quietly(self._watch)
        await state.client.aclose()
        await getattr(state.limiter, "close", _nothing)()
        close = getattr(state.recorder, "close", None)
        if close is not None:
            await close()

    async def __rsgi__(self, scope: Scope, proto: Proto) -> None:
        state = self.state
        assert state is not None, "worker not initialised"
        if getattr(scope, "proto", "http") == "ws":  # a WebSocket upgrade: the Realtime API
            await serve_ws(state, scope, proto)  # type: ignore[arg-type]
            return
        await serve(find(scope.method, scope.path), state, scope, proto)


def _read_settings() -> WorkerSettings:
    """A worker that `tollgate serve` did not start reads the settings as it would have."""
    from ..settings import ServeSettings

    return as_worker_settings(ServeSettings())


async def _nothing() -> None:
    return None


app = App()
