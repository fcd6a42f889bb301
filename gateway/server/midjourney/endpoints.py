"""The Midjourney endpoints (midjourney-proxy dialect) and their routes.

    POST [prefix]/mj/submit/{imagine|action|change|simple-change|blend|describe|modal|shorten}
    GET  [prefix]/mj/task/{id}/fetch
    POST [prefix]/mj/task/list-by-condition       {"ids": [...]}
    GET  [prefix]/mj/task/{id}/image-seed

`prefix` is empty, `/{mode}` or `/mj-{mode}` with mode fast|relax|turbo; it is forwarded
upstream as `/mj-{mode}` and recorded as the usage tag `mode:{mode}`. Tasks belong to the key
that submitted them: to any other key they do not exist (404, code 3).
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import msgspec

from ...errors import InvalidRequest, UpstreamError
from ...midjourney.tasks import MjRuntime, TaskRow
from ...providers.wire import midjourney as wire
from ...providers.wire.head import TOO_DEEP
from ..attempts import AttemptFailed
from ..envelope import Call, Endpoint
from ..http import JSON, json_body
from ..intake import read_body
from ..state import WorkerState
from .poller import refresh, runtime, view
from .runtime import call_upstream, mj_key, owned_task, snippet
from .submit import submit_endpoint

SUBMITS = ("imagine", "action", "change", "simple-change", "blend", "describe", "modal", "shorten")
PREFIXES: tuple[tuple[str, str | None], ...] = (
    ("", None),
    *((f"/{m}", m) for m in wire.MODES),
    *((f"/mj-{m}", m) for m in wire.MODES),
)
_MODES = "|".join(wire.MODES)
_TASK_PATH = re.compile(rf"^(?:/(?:mj-)?({_MODES}))?/mj/task/([^/]+)/(fetch|image-seed)$")
_LIST_LIMIT = 100
_REFRESH_CONCURRENCY = 8


def _list(mode: str | None) -> Endpoint:
    async def handle(call: Call) -> None:
        await list_by_condition(call, mode)

    return Endpoint(handle, "midjourney")


def _task_path(path: str) -> tuple[str | None, str]:
    match = _TASK_PATH.match(path)
    assert match is not None  # dynamic_route matched it
    return match.group(1), unquote(match.group(2))


async def fetch(call: Call) -> None:
    state = call.state
    key = mj_key(state, call.snap, call.scope)
    mode, task_id = _task_path(call.scope.path)
    mj = runtime(state)
    task = await refresh(state, mj, await owned_task(mj, key, task_id), mode)
    call.proto.response_bytes(200, [("content-type", JSON)], view(task))


async def image_seed(call: Call) -> None:
    state, snap, scope, proto = call.state, call.snap, call.scope, call.proto
    key = mj_key(state, snap, scope)
    mode, task_id = _task_path(scope.path)
    task = await owned_task(runtime(state), key, task_id)
    provider = snap.providers.get(task.provider)
    if provider is None:
        raise UpstreamError(f"the provider {task.provider} of this task is no longer configured", status=503)
    try:
        status, data = await call_upstream(
            state, provider, "GET", wire.task_path(task.upstream_id, "image-seed", mode)
        )
    except AttemptFailed as exc:
        raise UpstreamError(f"provider {provider.id}: {exc.detail}", status=exc.status) from None
    if status != 200 or wire.decode_submit(data) is None:
        detail = snippet(data)
        raise UpstreamError(f"upstream {provider.id} gave no image seed: HTTP {status}: {detail}")
    proto.response_bytes(200, [("content-type", JSON)], data)


async def list_by_condition(call: Call, mode: str | None) -> None:
    state, snap, scope, proto = call.state, call.snap, call.scope, call.proto
    key = mj_key(state, snap, scope)
    body = await read_body(scope, proto, 1 << 20, state.settings.body_timeout_s)
    ids: list[str] | None = None
    if body.strip():
        try:
            ids = msgspec.json.decode(json_body(scope, body), type=wire.ListCondition).ids or None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f'send {{"ids": ["<task id>", ...]}}: {exc}', param="ids") from None
        except RecursionError:  # msgspec on absurdly nested JSON
            raise InvalidRequest(TOO_DEEP, param="ids") from None
    mj = runtime(state)
    tasks = await mj.store.owned(key.id, ids, _LIST_LIMIT, "midjourney")
    tasks = await _refresh_all(state, mj, tasks, mode)
    proto.response_bytes(200, [("content-type", JSON)], b"[" + b",".join(view(t) for t in tasks) + b"]")


async def _refresh_all(
    state: WorkerState, mj: MjRuntime, tasks: list[TaskRow], mode: str | None
) -> list[TaskRow]:
    limit = asyncio.Semaphore(_REFRESH_CONCURRENCY)

    async def one(task: TaskRow) -> TaskRow:
        async with limit:
            return await refresh(state, mj, task, mode)

    return list(await asyncio.gather(*(one(t) for t in tasks)))


def _post_routes() -> dict[str, Endpoint]:
    routes: dict[str, Endpoint] = {}
    for prefix, mode in PREFIXES:
        routes.update({f"{prefix}/mj/submit/{e}": submit_endpoint(e, mode) for e in SUBMITS})
        routes[f"{prefix}/mj/task/list-by-condition"] = _list(mode)
    return routes


POST_ROUTES = _post_routes()
FETCH = Endpoint(fetch, "midjourney")
IMAGE_SEED = Endpoint(image_seed, "midjourney")


def dynamic_route(method: str, path: str) -> Endpoint | None:
    """GET [prefix]/mj/task/{id}/fetch and /image-seed."""
    if method != "GET":
        return None
    match = _TASK_PATH.match(path)
    if match is None:
        return None
    return FETCH if match.group(3) == "fetch" else IMAGE_SEED
