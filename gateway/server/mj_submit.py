"""`POST /mj/submit/*`: validate, pick the upstream, forward, store the task, bill the action.

New tasks (imagine, blend, describe, shorten) are routed like any model request: the key's
allow-list, the rules and the route of the model `midjourney` (aliases, priority tiers,
weights, breakers, fallbacks). Follow-ups (action, change, simple-change, modal) go to the
upstream that ran the task they act on, which must belong to the same key. Every submit leaves
one usage row; an accepted one (code 1 or 22) is billed its action's price.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from ..config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ..core.usage import TokenUsage
from ..errors import GatewayError, UpstreamError
from ..midjourney.actions import MODAL_OPENERS, action_cost, task_action_name
from ..midjourney.tasks import TaskRow
from ..providers import midjourney as wire
from ..providers.openai_wire import Head
from ..routing.select import candidates
from ..usage.record import UsageRecord
from .auth import check_model
from .exchange import Exchange
from .http import client_ip, json_body, send_json
from .intake import discard_body, read_body
from .mj_common import (
    MjRuntime,
    Unreachable,
    call_upstream,
    mj_key,
    owned_task,
    runtime,
    scrub,
    send_mj_error,
)
from .mj_parse import Submit, parse
from .relay import admit, decide
from .state import WorkerState

log = logging.getLogger("tollgate.midjourney")
DEFAULT_MODEL = "midjourney"  # the model (or alias) new Midjourney tasks are routed as


@dataclass(slots=True)
class Plan:
    targets: Iterable[RouteTarget]
    route: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    follow_up: bool


async def handle_submit(state: WorkerState, scope: Any, proto: Any, endpoint: str, mode: str | None) -> None:
    snap = state.store.current
    x = Exchange(f"mj/submit/{endpoint}")
    admission = None
    cost: Decimal | None = None
    err: GatewayError | None = None
    try:
        mj = runtime(state)
        key = mj_key(state, snap, scope, x)  # before any of the body is read
        body = await read_body(scope, proto, snap.settings.max_body_bytes, state.settings.body_timeout_s)
        x.body_bytes = len(body)
        req = parse(endpoint, json_body(scope, body))
        ip = client_ip(scope, state.settings.trust_forwarded)
        plan = await _plan(state, snap, mj, key, req, body, x, ip)
        if mode:
            x.tags = (*x.tags, f"mode:{mode}")
        admission = await state.limiter.admit(snap, key, plan.route, 0)
        path = wire.upstream_path(f"submit/{endpoint}", mode)
        provider, target, result = await _forward(state, snap, x, plan, path)
        x.status = 200
        code = result.code
        if code in wire.ACCEPTED or (code == wire.EXISTS and req.action in MODAL_OPENERS):
            price = snap.price_for(provider.id, target.model)
            cost = action_cost(price, req.action, x.multiplier())
        elif code == wire.EXISTS:
            cost = Decimal(0)  # a task the upstream already has: nothing new to bill
        else:
            x.error_type = wire.CODE_NAMES.get(code, f"mj_code_{code}")
        if result.task_id is not None and (code in wire.ACCEPTED or code == wire.EXISTS):
            result.result = await _store(mj, snap, x, key, req, provider, target, result, mode, cost)
        headers = [("x-request-id", x.request_id), ("x-tollgate-provider", provider.id), *admission.headers]
        send_json(proto, 200, result, headers)
    except GatewayError as exc:
        err = exc
    except Exception:  # a bug: still answered, and recorded, under the request's id
        log.exception("unhandled error on %s %s", scope.method, scope.path)
        err = GatewayError("internal error in the gateway; see its log")
    finally:
        if err is not None:
            x.fail(err)
            extra = admission.headers if admission else []
            send_mj_error(proto, err, [("x-request-id", x.request_id), *extra])
        record = usage_row(snap, x, cost)
        state.count(x.endpoint, x.status)
        state.recorder.record(record)
        if admission is not None:
            await state.limiter.settle(admission, record)
    if err is not None:  # answered early: drop the body the client may still be sending
        await discard_body(scope, proto)


async def _plan(
    state: WorkerState, snap: Snapshot, mj: MjRuntime, key: KeyRuntime, req: Submit, body: bytes,
    x: Exchange, ip: str,
) -> Plan:  # fmt: skip
    if req.task_ref is None:
        p = admit(snap, key, Head(model=DEFAULT_MODEL), body, "application/json", x, ip, "midjourney")
        targets = candidates(snap, p.route, state.rng, state.round_robin)
        return Plan(targets, p.route.name, p.decision.headers, wire.forward_body(body, {}), False)
    task = await owned_task(mj, key, req.task_ref)
    x.requested_model = task.requested_model
    check_model(key, task.requested_model)
    decision = decide(snap, key, Head(model=task.requested_model), x.endpoint, ip)
    x.tags = key.tags + tuple(t for t in decision.tags if t not in key.tags)
    # the upstream knows the task by its own id
    fields = {"content": f"{task.upstream_id} {req.rest}"} if req.rest else {"taskId": task.upstream_id}
    target = RouteTarget(task.provider, task.model, 1, 0)
    return Plan((target,), task.requested_model, decision.headers, wire.forward_body(body, fields), True)


async def _forward(
    state: WorkerState, snap: Snapshot, x: Exchange, plan: Plan, path: str
) -> tuple[ProviderRuntime, RouteTarget, wire.SubmitResult]:
    """Try the plan's upstreams until one takes the submit. A connection refused, a retryable
    HTTP status or a full queue (code 23) moves on; a timeout does not (the task may exist)."""
    routing = snap.settings.routing
    last: Unreachable | None = None
    full: tuple[ProviderRuntime, RouteTarget, wire.SubmitResult] | None = None
    for target in plan.targets:
        if x.attempts >= routing.max_attempts:
            break
        provider = snap.providers.get(target.provider)
        if provider is None or provider.kind != "midjourney":
            continue
        breaker = state.breakers.get(provider.id, routing.breaker)
        if not breaker.allow():
            continue
        x.provider, x.served_model = provider.id, target.model
        try:
            status, data = await call_upstream(state, provider, "POST", path, plan.body, plan.headers, x)
        except Unreachable as exc:
            breaker.failure()
            if exc.maybe_sent:
                raise UpstreamError(
                    f"provider {provider.id}: {exc.detail}; the task may have been submitted",
                    status=exc.status, code="upstream_timeout",
                ) from None  # fmt: skip
            last = exc
            continue
        if status in routing.retry_on:
            breaker.failure()
            last = Unreachable(provider.id, f"HTTP {status}: {scrub(data, provider)}", status)
            continue
        breaker.success()
        if status >= 400:
            raise UpstreamError(
                f"upstream {provider.id} refused the request: HTTP {status}: {scrub(data, provider)}",
                status=502 if status in (401, 403) else status,
            )
        result = wire.decode_submit(data)
        if result is None:
            raise UpstreamError(
                f"upstream {provider.id} did not answer with a midjourney-proxy submit result",
                code="upstream_bad_response",
            )
        if result.code == wire.QUEUE_FULL and not plan.follow_up:
            full = full or (provider, target, result)
            continue
        return provider, target, result
    if full is not None:
        return full  # every upstream's queue is full: the client gets the proxy's own answer
    if last is None:
        raise UpstreamError(
            "no Midjourney upstream is available right now", status=503, code="no_upstream_available"
        )
    raise UpstreamError(
        f"all {x.attempts} upstream attempt(s) failed; last: provider {last.provider}: {last.detail}",
        status=504 if last.status == 504 else 502,
        code="upstream_failed",
    )


async def _store(
    mj: MjRuntime, snap: Snapshot, x: Exchange, key: KeyRuntime, req: Submit, provider: ProviderRuntime,
    target: RouteTarget, result: wire.SubmitResult, mode: str | None, cost: Decimal | None,
) -> str | None:  # fmt: skip
    """Remember the new task; its id as the client will know it."""
    upstream_id = result.task_id
    assert upstream_id is not None
    now = time.time()
    status = {wire.QUEUED: "NOT_START", wire.EXISTS: "MODAL"}.get(result.code, "SUBMITTED")
    doc = {
        "id": upstream_id, "action": task_action_name(req.action), "status": status,
        "progress": "0%", "prompt": req.prompt, "description": result.description,
        "submitTime": int(now * 1000), "imageUrl": None, "failReason": None, "buttons": [],
        "properties": {},
    }  # fmt: skip
    row = TaskRow(
        id=upstream_id, provider=provider.id, upstream_id=upstream_id, key_id=key.id,
        group=key.group.id if key.group else None, model=target.model,
        requested_model=x.requested_model or target.model, action=req.action, mode=mode,
        endpoint=x.endpoint, request_id=x.request_id, cost=cost, tags=x.tags,
        revision=snap.revision, status=status, doc=msgspec.json.encode(doc), submitted_at=now,
    )  # fmt: skip
    try:
        stored = await mj.store.add(row, now + mj.poll_s, rebill=result.code in wire.ACCEPTED)
    except Exception as exc:
        raise GatewayError(
            f"the upstream accepted task {upstream_id} but the gateway could not store it ({exc})"
        ) from None
    return stored.id if stored.key_id == key.id else None


def usage_row(snap: Snapshot, x: Exchange, cost: Decimal | None) -> UsageRecord:
    x.usage = TokenUsage(source="none")  # billed per action, not per token
    record = x.to_record(snap)
    if cost is None:
        return record
    return msgspec.structs.replace(record, cost_usd=cost, usage_source="upstream")
