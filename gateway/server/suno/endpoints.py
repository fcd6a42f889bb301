"""Suno in New API's task dialect, to a suno-api compatible upstream (provider kind `suno`):

    POST /suno/submit/music     {"prompt", "mv", "title", "tags", "gpt_description_prompt", ...}
    POST /suno/submit/lyrics    {"prompt"}
    GET  /suno/fetch/{id}       {"code": "success", "message": "", "data": <task>}
    POST /suno/fetch            {"ids": [...]} -> {"code": "success", "data": [<task>...]}

A submit is routed as the model `suno` (an alias or a model of suno providers: allow-lists,
rules, priorities and fallbacks apply), forwarded as sent, and billed its action's price
(`per_action`: suno_music, suno_lyrics), reserved against the key's budgets first; the engine
refunds a task that ends in FAILURE. Errors are `{"code", "message", "data": null}`. A task
belongs to the key that submitted it: to any other key it does not exist (404).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import unquote

import msgspec

from ...billing.pricing import action_cost
from ...config.snapshot import ProviderRuntime, RouteTarget
from ...core.usage import TokenUsage
from ...errors import GatewayError, InvalidRequest, NotFound, UpstreamError
from ...providers.wire import suno as wire
from ...providers.wire.head import TOO_DEEP, Head
from ...routing.select import candidates
from ...tasks.adapter import Seen
from ...tasks.engine import TaskEngine
from ...tasks.store import TaskRow
from ..admission import admit, read_request
from ..auth import authenticate, presented_key
from ..envelope import Call, Endpoint
from ..http import JSON, client_ip
from ..intake import read_body
from ..state import WorkerState
from ..task_submit import forward_first, new_row, store_charged
from ..task_upstream import read, snippet
from ..tasks import engine

log = logging.getLogger("tollgate.suno")
FAMILY = "suno"
_FETCH = re.compile(r"^/suno/fetch/([^/]+)$")
_LIST_LIMIT = 100
_REFRESH_CONCURRENCY = 8


class SunoTasks:
    family = FAMILY
    refund_type = "suno_refund"

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        provider = self.state.store.current.providers.get(task.provider)
        if provider is None:
            return None
        try:
            status, data = await read(self.state, provider, "GET", wire.fetch_path(task.upstream_id))
        except GatewayError as exc:
            log.warning("cannot refresh Suno task %s from %s: %s", task.id, task.provider, exc.message)
            return None
        found = wire.decode_task(data) if status == 200 else None
        if found is None:
            return None
        state, fields = found
        return Seen(state.status, wire.task_doc(task.id, fields), state.status in wire.FINISHED)


def runtime(state: WorkerState) -> TaskEngine:
    tasks = state.tasks
    if tasks is not None and FAMILY in tasks.adapters:
        return tasks
    return engine(state, SunoTasks(state))


def _ok(data: Any) -> bytes:
    return msgspec.json.encode({"code": "success", "message": "", "data": data})


def _decode(body: bytes, kind: type[Any]) -> Any:
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except RecursionError:
        raise InvalidRequest(TOO_DEEP) from None


def _check(action: str, body: bytes) -> None:
    if action == "lyrics":
        if not _decode(body, wire.Lyrics).prompt.strip():
            raise InvalidRequest("prompt is required", param="prompt")
        return
    music = _decode(body, wire.Music)
    if not (music.prompt.strip() or music.gpt_description_prompt.strip()):
        raise InvalidRequest("prompt (lyrics) or gpt_description_prompt is required", param="prompt")


def _is_suno(call: Call, target: RouteTarget) -> bool:
    provider = call.snap.providers.get(target.provider)
    return provider is not None and provider.kind == "suno"


def submit_endpoint(action: str) -> Endpoint:
    async def handle(call: Call) -> None:
        await _submit(call, action)

    return Endpoint(handle, FAMILY, f"suno/submit/{action}")


async def _submit(call: Call, action: str) -> None:
    state, snap, scope, x = call.state, call.snap, call.scope, call.x
    x.usage = TokenUsage(source="none")  # billed per action (x.action_cost), not per token
    tasks = runtime(state)
    ip, key, body = await read_request(state, snap, scope, call.proto, x, presented_key(scope))
    _check(action, body)
    p = admit(snap, key, Head(model=wire.DEFAULT_MODEL), body, JSON, x, ip, FAMILY)
    billed = wire.ACTIONS[action]
    targets = [t for t in candidates(snap, p.route, state.rng, state.round_robin) if _is_suno(call, t)]
    costs = {
        (t.provider, t.model): action_cost(snap.price_for(t.provider, t.model), billed, x.multiplier())
        for t in targets
    }
    if snap.settings.pricing == "strict":
        targets = [t for t in targets if costs[(t.provider, t.model)] is not None]
    if not targets:
        raise InvalidRequest(
            f"no suno provider with a per_action price for {billed} serves `{wire.DEFAULT_MODEL}`",
            code="model_not_supported",
        )
    reserve = max((c for c in costs.values() if c is not None), default=None)
    limit_headers = await call.admit(key, p.route.name, 0, reserve_usd=reserve)
    path = wire.submit_path(action)
    provider, target, status, data = await forward_first(
        state, snap, x, targets, lambda _p, _t: (path, body, JSON), p.decision.headers, "Suno task"
    )
    upstream_id = _accepted(provider, status, data)
    doc = wire.task_doc(
        upstream_id,
        {"action": action.upper(), "status": "SUBMITTED", "progress": "0%", "fail_reason": "", "data": None},
    )
    row = new_row(
        snap,
        x,
        key,
        FAMILY,
        provider,
        target,
        upstream_id,
        upstream_id,
        billed,
        costs[(target.provider, target.model)],
        "SUBMITTED",
        doc,
    )
    stored = await store_charged(tasks, x, row)
    if stored.id != upstream_id:
        await tasks.store.update(
            stored.id,
            "SUBMITTED",
            wire.task_doc(stored.id, msgspec.json.decode(doc)),
            False,
            stored.submitted_at,
        )
    x.status = 200
    headers = [
        ("content-type", JSON),
        ("x-request-id", x.request_id),
        ("x-tollgate-provider", provider.id),
        *limit_headers,
    ]
    call.proto.response_bytes(200, headers, _ok(stored.id))


def _accepted(provider: ProviderRuntime, status: int, data: bytes) -> str:
    answer = wire.decode_submitted(data)
    if status >= 400 or answer is None:
        raise UpstreamError(
            f"upstream {provider.id} refused the task: HTTP {status}: {snippet(data)}",
            status=502 if status >= 500 or answer is None else status,
            code="upstream_refused",
        )
    if answer.code != "success" or not answer.data:
        raise UpstreamError(
            f"upstream {provider.id} refused the task: {answer.message[:300] or answer.code}",
            status=400,
            code="upstream_refused",
        )
    return answer.data


def _key_id(call: Call) -> str:
    ip = client_ip(call.scope, call.state.settings.trust_forwarded)
    return authenticate(call.snap, presented_key(call.scope), ip).id


def _not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id[:100]} not found", code="task_not_exist")


async def fetch_one(call: Call) -> None:
    key_id = _key_id(call)
    match = _FETCH.match(call.scope.path)
    assert match is not None
    task_id = unquote(match.group(1))
    tasks = runtime(call.state)
    task = await tasks.store.get(task_id)
    if task is None or task.key_id != key_id or task.family != FAMILY:
        raise _not_found(task_id)
    task = await tasks.refresh(task)
    call.proto.response_bytes(200, [("content-type", JSON)], _ok(msgspec.Raw(task.doc)))


async def fetch_many(call: Call) -> None:
    key_id = _key_id(call)
    body = await read_body(call.scope, call.proto, 1 << 20, call.state.settings.body_timeout_s)
    ids = _decode(body, wire.Ids).ids
    if not ids:
        raise InvalidRequest('send {"ids": ["<task id>", ...]}', param="ids")
    tasks = runtime(call.state)
    limit = asyncio.Semaphore(_REFRESH_CONCURRENCY)

    async def refresh(task: TaskRow) -> TaskRow:
        async with limit:
            return await tasks.refresh(task)

    owned = await tasks.store.owned(key_id, ids, _LIST_LIMIT, FAMILY)
    found = await asyncio.gather(*(refresh(t) for t in owned))
    call.proto.response_bytes(200, [("content-type", JSON)], _ok([msgspec.Raw(t.doc) for t in found]))


POST_ROUTES = {
    "/suno/submit/music": submit_endpoint("music"),
    "/suno/submit/lyrics": submit_endpoint("lyrics"),
    "/suno/fetch": Endpoint(fetch_many, FAMILY),
}
_FETCH_ONE = Endpoint(fetch_one, FAMILY)


def dynamic_route(method: str, path: str) -> Endpoint | None:
    if method == "GET" and _FETCH.match(path):
        return _FETCH_ONE
    return None
