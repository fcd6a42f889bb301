"""`POST /mj/submit/*`: validate, pick the upstream, forward, store the task, bill the action.

New tasks (imagine, blend, describe, shorten) are routed like any model request: the key's
allow-list, the rules and the route of the model `midjourney` (aliases, priority tiers,
weights, breakers, fallbacks). Follow-ups (action, change, simple-change, modal) go to the
upstream that ran the task they act on, which must belong to the same key. Every submit leaves
one usage row; an accepted one (code 1 or 22) is billed its action's price.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from ..config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ..errors import GatewayError, InvalidRequest, UpstreamError
from ..midjourney.actions import (
    MODAL_OPENERS,
    BadAction,
    action_cost,
    change_action,
    custom_id_action,
    endpoint_action,
    parse_simple_change,
    task_action_name,
)
from ..midjourney.tasks import TaskRow
from ..providers import midjourney as wire
from ..providers.openai_wire import Head
from ..routing.select import candidates
from ..usage.record import TokenUsage, UsageRecord
from .auth import check_model
from .exchange import Exchange
from .http import client_ip, json_body, read_body, send_json
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
from .relay import admit, decide
from .state import WorkerState

DEFAULT_MODEL = "midjourney"  # the model (or alias) new Midjourney tasks are routed as
S = TypeVar("S")


@dataclass(slots=True)
class Submit:
    action: str  # the billed action, e.g. mj_upscale
    task_ref: str | None = None  # the client's id of the task acted on (follow-ups)
    rest: str = ""  # simple-change: what follows the task id, e.g. "U1"
    prompt: str = ""


@dataclass(slots=True)
class Plan:
    targets: Iterable[RouteTarget]
    route: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    follow_up: bool


def _decode(body: bytes, kind: type[S]) -> S:
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None


def parse(endpoint: str, body: bytes) -> Submit:
    try:
        return _parse(endpoint, body)
    except BadAction as exc:
        raise InvalidRequest(str(exc)) from None


def _parse(endpoint: str, body: bytes) -> Submit:
    if endpoint in ("imagine", "shorten"):
        prompt = _decode(body, wire.Imagine).prompt
        if not prompt.strip():
            raise InvalidRequest("prompt is required", param="prompt")
        return Submit(endpoint_action(endpoint), prompt=prompt)
    if endpoint == "blend":
        if not 2 <= len(_decode(body, wire.Blend).base64Array) <= 5:
            raise InvalidRequest("base64Array needs 2 to 5 images", param="base64Array")
        return Submit("mj_blend")
    if endpoint == "describe":
        describe = _decode(body, wire.Describe)
        if not (describe.base64 or describe.link):
            raise InvalidRequest("base64 (or link) is required", param="base64")
        return Submit("mj_describe")
    if endpoint == "action":
        act = _decode(body, wire.Action)
        _require_task(act.taskId)
        return Submit(custom_id_action(act.customId), act.taskId)
    if endpoint == "change":
        change = _decode(body, wire.Change)
        _require_task(change.taskId)
        action = change_action(change.action)
        if action != "mj_reroll" and change.index not in (1, 2, 3, 4):
            raise InvalidRequest("index must be 1 to 4", param="index")
        return Submit(action, change.taskId)
    if endpoint == "simple-change":
        simple = parse_simple_change(_decode(body, wire.SimpleChange).content)
        return Submit(change_action(simple.action), simple.task_id, rest=simple.rest)
    if endpoint == "modal":
        modal = _decode(body, wire.Modal)
        _require_task(modal.taskId)
        return Submit("mj_modal", modal.taskId)
    raise InvalidRequest(f"unknown submit endpoint {endpoint}")


def _require_task(task_id: str) -> None:
    if not task_id.strip():
        raise InvalidRequest("taskId is required", param="taskId")


async def handle_submit(state: WorkerState, scope: Any, proto: Any, endpoint: str, mode: str | None) -> None:
    snap = state.store.current
    x = Exchange(f"mj/submit/{endpoint}")
    admission = None
    cost: Decimal | None = None
    try:
        mj = runtime(state)
        body = await read_body(scope, proto, snap.settings.max_body_bytes)
        x.body_bytes = len(body)
        key = x.key = mj_key(state, snap, scope)
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
    except GatewayError as err:
        x.fail(err)
        send_mj_error(proto, err, [("x-request-id", x.request_id), *(admission.headers if admission else [])])
    finally:
        record = usage_row(snap, x, cost)
        state.count(x.endpoint, x.status)
        state.recorder.record(record)
        if admission is not None:
            await state.limiter.settle(admission, record)


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
        x.attempts += 1
        x.provider, x.served_model = provider.id, target.model
        try:
            status, data = await call_upstream(state, provider, "POST", path, plan.body, plan.headers)
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
