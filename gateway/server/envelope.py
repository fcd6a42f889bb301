"""The one request envelope: every route goes through `serve`, and handlers only return or raise.

`serve` owns what every endpoint used to do for itself: the snapshot taken once (the whole
request runs on it), the `Exchange` that becomes the usage row, the admission the limiter
settles, the disconnect watch, the single error boundary (a `GatewayError` in the route's API
shape, a bug as a 500, both with `x-request-id` on recorded routes), the usage row and the
settle step. See docs/architecture.md, "The request path".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from ..billing.limits import Admission
from ..config.snapshot import KeyRuntime, Snapshot
from ..errors import GatewayError, InvalidRequest
from ..providers.wire.head import TOO_DEEP
from .account_events import check_balance, check_budget
from .disconnect import DisconnectWatch
from .exchange import Exchange
from .http import Headers, send_error
from .intake import discard_body
from .rsgi import Proto, Scope
from .state import WorkerState

log = logging.getLogger("tollgate")
INTERNAL = "internal error in the gateway; see its log"


@dataclass(slots=True)
class Call:
    """One request as its handler sees it."""

    state: WorkerState
    snap: Snapshot  # taken once: the whole request runs on this policy
    scope: Scope
    proto: Proto
    x: Exchange  # becomes the usage row on recorded routes
    family: str  # the API shape of errors; a handler may narrow it (e.g. Anthropic's /v1/models)
    admission: Admission | None = None

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, x: Exchange,
                 family: str, admission: Admission | None = None) -> None:
        self.state = state
        self.snap = snap
        self.scope = scope
        self.proto = proto
        self.x = x
        self.family = family
        self.admission = admission

    async def admit(self, key: KeyRuntime, route: str, tokens: int, token_limit: int = 0,
                    reserve_usd: Decimal | None = None) -> Headers:
        """Reserve limits and budgets for this request; the envelope settles them at the end.
        `reserve_usd`: a cost known before the request runs (an asynchronous task's charge)."""
        self.admission = await self.state.limiter.admit(self.snap, key, route, tokens, token_limit,
                                                        reserve_usd)
        if key.prepaid is not None:
            check_balance(self.state, key, self.admission.headers)  # balance_low alerts
        if self.admission.budget_fn is not None:
            check_budget(self.state, key, self.admission)  # budget_threshold alerts
        return self.admission.headers


CallHandler = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a path serves: its handler, the API family of its errors, and whether it is a
    recorded endpoint (a usage row named `endpoint`) watched for client disconnects."""

    handler: CallHandler
    family: str = "openai"
    endpoint: str | None = None  # None: not recorded (health, metrics, admin, task reads)
    watch: bool = False  # cancel the handler when the client hangs up (relayed requests)


async def serve(route: Endpoint, state: WorkerState, scope: Scope, proto: Proto) -> None:
    snap = state.store.current
    call = Call(state, snap, scope, proto, Exchange(route.endpoint or ""), route.family)
    watch = state.watches.watch(proto) if route.watch else None
    err: GatewayError | None = None
    # No `await` in a `finally` in this module (a mypyc bug: docs/architecture.md): every way
    # out of the handler ends the request through `_end`.
    try:
        await route.handler(call)
    except (GatewayError, RecursionError) as exc:
        # RecursionError: msgspec on absurdly nested client JSON, wherever it was decoded
        err = exc if isinstance(exc, GatewayError) else InvalidRequest(TOO_DEEP)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if watch is None or not watch.fired or task is None:
            await _end(call, route, watch, None)
            raise
        task.uncancel()
        call.x.cancelled, call.x.status = True, call.x.status or 499
        call.x.error_type = call.x.error_type or "client_cancelled"
    except Exception:  # a bug: still answered (and recorded) in the route's shape
        log.exception("unhandled error on %s %s", scope.method, scope.path)
        err = GatewayError(INTERNAL)
    except BaseException:
        await _end(call, route, watch, None)
        raise
    await _end(call, route, watch, err)
    if err is not None:  # answered early: drop the body the client may still be sending
        await discard_body(scope, proto)


async def _end(call: Call, route: Endpoint, watch: DisconnectWatch | None, err: GatewayError | None) -> None:
    """The error answer (if any), the disconnect watch closed, the usage row and the settle step."""
    if err is not None:
        _answer_error(call, err, route)
    if watch is not None:
        watch.close()
    if route.endpoint is not None:
        await _record(call)


def _answer_error(call: Call, err: GatewayError, route: Endpoint) -> None:
    headers: Headers = []
    if route.endpoint is not None:
        call.x.fail(err)
        headers.append(("x-request-id", call.x.request_id))
    if call.admission is not None:
        headers.extend(call.admission.headers)
    send_error(call.proto, err, call.family, headers=headers)


async def _record(call: Call) -> None:
    x = call.x
    call.state.count(x.endpoint, x.status)
    record = x.to_record(call.snap)
    call.state.recorder.record(record)
    if call.admission is not None:
        limiter = call.state.limiter
        if not limiter.settle_now(call.admission, record):
            await limiter.settle(call.admission, record)
