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

import msgspec

from ...config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ...core.usage import TokenUsage
from ...errors import GatewayError, UpstreamError
from ...midjourney.actions import MODAL_OPENERS, action_cost, task_action_name
from ...midjourney.tasks import MjRuntime, TaskRow
from ...providers.wire import midjourney as wire
from ...providers.wire.head import Head
from ...routing.select import candidates
from ..admission import admit, decide, read_request
from ..attempts import AttemptFailed, Attempts, Exhausted, Send
from ..auth import check_model
from ..envelope import Call, Endpoint
from ..exchange import Exchange
from ..http import json_body, send_json
from ..state import WorkerState
from .parse import Submit, parse
from .poller import runtime
from .runtime import deliver_once, mj_secret, owned_task, snippet

log = logging.getLogger("tollgate.midjourney")
DEFAULT_MODEL = "midjourney"  # the model (or alias) new Midjourney tasks are routed as


@dataclass(slots=True)
class Plan:
    targets: Iterable[RouteTarget]
    route: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    follow_up: bool


def submit_endpoint(endpoint: str, mode: str | None) -> Endpoint:
    """`POST [prefix]/mj/submit/{endpoint}`: recorded as `mj/submit/{endpoint}`, billed per action."""

    async def handle(call: Call) -> None:
        await _submit(call, endpoint, mode)

    return Endpoint(handle, "midjourney", f"mj/submit/{endpoint}")


async def _submit(call: Call, endpoint: str, mode: str | None) -> None:
    state, snap, scope, x = call.state, call.snap, call.scope, call.x
    x.usage = TokenUsage(source="none")  # billed per action (x.action_cost), not per token
    mj = runtime(state)
    ip, key, body = await read_request(state, snap, scope, call.proto, x, mj_secret(scope))
    req = parse(endpoint, json_body(scope, body))
    plan = await _plan(state, snap, mj, key, req, body, x, ip)
    if mode:
        x.tags = (*x.tags, f"mode:{mode}")
    limit_headers = await call.admit(key, plan.route, 0)
    path = wire.upstream_path(f"submit/{endpoint}", mode)
    provider, target, result = await _forward(state, snap, x, plan, path)
    x.status = 200
    code = result.code
    if code in wire.ACCEPTED or (code == wire.EXISTS and req.action in MODAL_OPENERS):
        x.action_cost = action_cost(snap.price_for(provider.id, target.model), req.action, x.multiplier())
    elif code == wire.EXISTS:
        x.action_cost = Decimal(0)  # a task the upstream already has: nothing new to bill
    else:
        x.error_type = wire.CODE_NAMES.get(code, f"mj_code_{code}")
    if result.task_id is not None and (code in wire.ACCEPTED or code == wire.EXISTS):
        result.result = await _store(mj, snap, x, key, req, provider, target, result, mode, x.action_cost)
    headers = [("x-request-id", x.request_id), ("x-tollgate-provider", provider.id), *limit_headers]
    send_json(call.proto, 200, result, headers)


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


Accepted = tuple[ProviderRuntime, RouteTarget, wire.SubmitResult]


async def _forward(state: WorkerState, snap: Snapshot, x: Exchange, plan: Plan, path: str) -> Accepted:
    """The plan's upstreams through the attempt engine until one takes the submit. A connection
    refused, a retryable HTTP status or a full queue (code 23) moves on; a timeout does not (the
    task may exist)."""
    full: list[Accepted] = []

    def for_target(provider: ProviderRuntime, target: RouteTarget) -> Send[Accepted]:
        async def send(api_key: str) -> Accepted:
            try:
                status, data = await deliver_once(state, provider, api_key, "POST", path, plan.body,
                                                  plan.headers)
            except AttemptFailed as exc:
                if exc.maybe_sent:  # not retried elsewhere: the task may exist
                    exc.final = UpstreamError(f"provider {provider.id}: {exc.detail}; the task may have been "
                                              "submitted", status=exc.status, code="upstream_timeout")
                raise
            result = _accepted(provider, status, data, snap)
            if result.code == wire.QUEUE_FULL and not plan.follow_up:
                full.append((provider, target, result))
                raise AttemptFailed(provider.id, "queue full", 503, breaker=False)
            return provider, target, result

        return send

    targets = (t for t in plan.targets if _is_midjourney(snap, t))
    try:
        return await Attempts(state, snap, x).first(targets, for_target)
    except Exhausted as none:
        if full:
            return full[0]  # every upstream's queue is full: the client gets the proxy's own answer
        raise none.error(x, "no Midjourney upstream is available right now") from None


def _is_midjourney(snap: Snapshot, target: RouteTarget) -> bool:
    provider = snap.providers.get(target.provider)
    return provider is not None and provider.kind == "midjourney"


def _accepted(provider: ProviderRuntime, status: int, data: bytes, snap: Snapshot) -> wire.SubmitResult:
    """The proxy's submit result; a retryable status is an attempt failure, another error final."""
    if status in snap.settings.routing.retry_on:
        raise AttemptFailed(provider.id, f"HTTP {status}: {snippet(data)}", status)
    if status >= 400:
        detail = snippet(data)
        raise UpstreamError(f"upstream {provider.id} refused the request: HTTP {status}: {detail}",
                            status=502 if status in (401, 403) else status)
    result = wire.decode_submit(data)
    if result is None:
        raise UpstreamError(f"upstream {provider.id} did not answer with a midjourney-proxy submit result",
                            code="upstream_bad_response")
    return result


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
    if stored.key_id != key.id:
        return None
    if stored.request_id == x.request_id:
        x.task_id = stored.id
    return stored.id
