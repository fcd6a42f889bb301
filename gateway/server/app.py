"""The RSGI application: routing table, the one error boundary, per-worker start and stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..billing.limits import Admission
from ..billing.setup import make_limiter
from ..config.reload import PolicyStore
from ..config.snapshot import Snapshot
from ..errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from ..providers.openai_wire import TOO_DEEP
from ..providers.transport.clients import make_upstream_client
from ..redact import redact_logs
from ..settings import ServeSettings
from ..usage.ledger import Ledger
from . import admin, count_tokens, midjourney, mj_tasks, native
from .exchange import Exchange
from .http import family_of, send_error
from .intake import discard_body, stop_deadlines
from .relay import Prepared, estimate_tokens, prepare, relay
from .state import Recorder, WorkerState

log = logging.getLogger("tollgate")
Handler = Callable[[WorkerState, Any, Any], Awaitable[None]]
INTERNAL = "internal error in the gateway; see its log"

RELAYED = (
    "chat/completions",
    "completions",
    "embeddings",
    "images/generations",
    "images/edits",
    "audio/speech",
    "audio/transcriptions",
    "audio/translations",
    "moderations",
    "rerank",
    "responses",
)


PrepareFn = Callable[[WorkerState, Snapshot, Any, Any, Exchange], Awaitable[Prepared]]


def relay_handler(endpoint: str, prepare_fn: PrepareFn = prepare, family: str = "openai") -> Handler:
    """A relayed endpoint: `prepare_fn` reads the client's format, errors go out in `family`'s shape."""

    async def handle(state: WorkerState, scope: Any, proto: Any) -> None:
        snap = state.store.current  # the whole request runs on this snapshot
        x = Exchange(endpoint)
        watch = state.watches.watch(proto)
        admission: Admission | None = None
        err: GatewayError | None = None
        try:
            p = await prepare_fn(state, snap, scope, proto, x)
            admission = await state.limiter.admit(snap, p.key, p.route.name, estimate_tokens(p),
                                                  p.head.token_limit)
            p.extra_headers = admission.headers
            await relay(state, snap, proto, x, p)
        except (GatewayError, RecursionError) as exc:
            # RecursionError: msgspec on absurdly nested client JSON (in a codec): bad input
            err = exc if isinstance(exc, GatewayError) else InvalidRequest(TOO_DEEP)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not watch.fired or task is None:
                raise
            task.uncancel()
            x.cancelled, x.status = True, x.status or 499
            x.error_type = x.error_type or "client_cancelled"
        except Exception:  # a bug: still answered, and recorded, under the request's id
            log.exception("unhandled error on %s %s", scope.method, scope.path)
            err = GatewayError(INTERNAL)
        finally:
            if err is not None:
                x.fail(err)
                extra = admission.headers if admission else []
                send_error(proto, err, family, headers=[("x-request-id", x.request_id), *extra])
            watch.close()
            state.count(endpoint, x.status)
            record = x.to_record(snap)
            state.recorder.record(record)
            if admission is not None:
                await state.limiter.settle(admission, record)
        if err is not None:  # answered early: drop the body the client may still be sending
            await discard_body(scope, proto)

    return handle


POST_ROUTES: dict[str, Handler] = {f"/v1/{e}": relay_handler(e) for e in RELAYED}
GET_ROUTES: dict[str, Handler] = {
    "/v1/models": admin.list_models,
    "/healthz": admin.healthz,
    "/readyz": admin.readyz,
    "/metrics": admin.metrics,
    "/admin/policy": admin.policy_status,
}
POST_ROUTES["/admin/usage/query"] = admin.usage_query
POST_ROUTES.update(midjourney.POST_ROUTES)  # /mj/submit/*, /mj/task/list-by-condition
POST_ROUTES["/v1/messages"] = relay_handler("messages", native.prepare_anthropic, "anthropic")
POST_ROUTES["/v1/messages/count_tokens"] = count_tokens.anthropic_count_tokens  # free: not billed or limited
GEMINI_EMBED = {v: relay_handler(v, native.prepare_gemini, "gemini") for v in native.EMBED_VERBS}
GEMINI = native.GeminiRoutes(relay_handler("generateContent", native.prepare_gemini, "gemini"),
                             count_tokens.gemini_count_tokens, GEMINI_EMBED)


class App:
    """`__rsgi_init__` / `__rsgi_del__` run once per granian worker process."""

    def __init__(self) -> None:
        self.state: WorkerState | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(
        self, settings: ServeSettings | None = None, recorder: Recorder | None = None
    ) -> WorkerState:
        settings = settings or ServeSettings()
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
        limiter = await make_limiter(settings, ledger)
        self.state = WorkerState(
            settings, store, make_upstream_client(settings.transport, settings.pool_size), recorder, limiter
        )
        self._sweeper = asyncio.get_running_loop().create_task(self.state.watches.sweep())
        await mj_tasks.start(self.state)  # Midjourney task store and poller
        return self.state

    async def stop(self) -> None:
        state = self.state
        if state is None:
            return
        state.draining = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        stop_deadlines()
        await state.store.stop_watching()
        await mj_tasks.stop(state)
        await state.client.aclose()
        await getattr(state.limiter, "close", _nothing)()
        close = getattr(state.recorder, "close", None)
        if close is not None:
            await close()

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        state = self.state
        assert state is not None, "worker not initialised"
        path, method = scope.path, scope.method
        routes = POST_ROUTES if method == "POST" else GET_ROUTES if method == "GET" else {}
        handler = routes.get(path) or GEMINI.route(method, path) or admin.dynamic_route(method, path)
        try:
            if handler is None:
                raise _no_route(method, path)
            await handler(state, scope, proto)
        except GatewayError as err:
            send_error(proto, err, family_of(path))
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            send_error(proto, GatewayError(INTERNAL), family_of(path))
        else:
            return
        await discard_body(scope, proto)  # answered early: drop the body the client may still send


def _no_route(method: str, path: str) -> GatewayError:
    if method != "POST" and (path in POST_ROUTES or GEMINI.route("POST", path) is not None):
        return MethodNotAllowed(f"{method} is not allowed on {path}: use POST", headers=(("allow", "POST"),))
    return NotFound(f"unknown path {method} {path}", code="unknown_url")


async def _nothing() -> None:
    return None


app = App()
