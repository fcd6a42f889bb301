"""The `/v1/videos` routes and the task reads (unrecorded: the submit row carries the charge).

    POST   /v1/videos                      create (JSON or multipart/form-data)   recorded: videos
    GET    /v1/videos?after=&limit=&order= the key's own videos, newest first (OpenAI's list page)
    GET    /v1/videos/{id}                 the video object, refreshed from its upstream
    GET    /v1/videos/{id}/content         the file, streamed through; Range passed on (206)
    DELETE /v1/videos/{id}                 deleted upstream, then forgotten
    POST   /v1/videos/{id}/remix           a new video from this one          recorded: videos/remix

A video belongs to the key that created it: to any other key it does not exist (404).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, unquote

import msgspec

from ...errors import InvalidRequest, NotFound, UpstreamError
from ...providers.transport.base import UpstreamConnectError, UpstreamResponse, UpstreamTimeout
from ...providers.wire import videos as wire
from ...tasks.store import TaskRow
from ..auth import authenticate, presented_key
from ..envelope import Call, Endpoint
from ..http import JSON, client_ip
from ..task_upstream import open_call, read, snippet, with_keys
from .adapter import FAMILY, owned_video, runtime
from .submit import create, remix
from .upstream import VEO, content_path, fetch_path

log = logging.getLogger("tollgate.videos")
_PATH = re.compile(r"^/v1/videos/([^/]+)(?:/(content|remix))?$")
_PASSED = ("content-type", "content-length", "content-range", "accept-ranges", "etag", "last-modified")
_LIST_MAX = 100


def _video_id(call: Call) -> tuple[str, str | None]:
    match = _PATH.match(call.scope.path)
    assert match is not None  # dynamic_route matched it
    return unquote(match.group(1)), match.group(2)


def _key_id(call: Call) -> str:
    ip = client_ip(call.scope, call.state.settings.trust_forwarded)
    return authenticate(call.snap, presented_key(call.scope), ip).id


def _query(call: Call) -> dict[str, str]:
    raw = parse_qs(str(getattr(call.scope, "query_string", "") or ""))
    return {k: v[-1] for k, v in raw.items()}


async def retrieve(call: Call) -> None:
    key_id = _key_id(call)
    tasks = runtime(call.state)
    task = await tasks.refresh(await owned_video(tasks, key_id, _video_id(call)[0]))
    call.proto.response_bytes(200, [("content-type", JSON)], task.doc)


async def list_videos(call: Call) -> None:
    key_id = _key_id(call)
    query = _query(call)
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit must be a number", param="limit") from None
    if not 1 <= limit <= _LIST_MAX:
        raise InvalidRequest(f"limit must be 1 to {_LIST_MAX}", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc", param="order")
    rows = await runtime(call.state).store.page(key_id, FAMILY, query.get("after"), limit + 1, order == "asc")
    page = rows[:limit]
    first, last = (page[0].id, page[-1].id) if page else (None, None)
    tail = msgspec.json.encode({"first_id": first, "last_id": last, "has_more": len(rows) > limit})
    body = b'{"object":"list","data":[' + b",".join(t.doc for t in page) + b"]," + tail[1:]
    call.proto.response_bytes(200, [("content-type", JSON)], body)


async def delete(call: Call) -> None:
    key_id = _key_id(call)
    tasks = runtime(call.state)
    task = await owned_video(tasks, key_id, _video_id(call)[0])
    provider = call.snap.providers.get(task.provider)
    if provider is not None and provider.kind != VEO:
        status, data = await read(call.state, provider, "DELETE", fetch_path(provider, task))
        if status >= 400 and status != 404:
            raise UpstreamError(
                f"upstream {provider.id} did not delete the video: HTTP {status}: {snippet(data)}",
                status=502 if status >= 500 else status,
            )
    await tasks.store.remove(task.id, key_id)
    doc = {"id": task.id, "object": "video.deleted", "deleted": True}
    call.proto.response_bytes(200, [("content-type", JSON)], msgspec.json.encode(doc))


async def _source(call: Call, task: TaskRow, variant: str | None) -> str:
    """The upstream path (or URL) of the video's file."""
    provider = call.snap.providers[task.provider]
    if provider.kind != VEO:
        return content_path(provider, task, variant)
    if variant not in (None, "video"):
        raise NotFound(
            f"Veo videos have no {variant[:40]} variant", code="variant_not_found", param="variant"
        )
    status, data = await read(call.state, provider, "GET", task.upstream_id)
    op = wire.decode_operation(data) if status == 200 else None
    uri = op.video_uri() if op is not None else None
    if uri is None:
        raise UpstreamError(f"upstream {provider.id} gave no video file for {task.id}")
    return uri


async def content(call: Call) -> None:
    key_id = _key_id(call)
    tasks = runtime(call.state)
    task = await owned_video(tasks, key_id, _video_id(call)[0])
    if task.status != "completed":
        raise InvalidRequest(
            f"video {task.id} is not completed (status {task.status})", code="video_not_ready"
        )
    provider = call.snap.providers.get(task.provider)
    if provider is None:
        raise UpstreamError(f"the provider {task.provider} of this video is no longer configured", status=503)
    path = await _source(call, task, _query(call).get("variant"))
    passed = tuple((h, str(v)) for h in ("range", "if-range") if (v := call.scope.headers.get(h)))

    async def send(api_key: str) -> UpstreamResponse:
        return await open_call(call.state, provider, api_key, "GET", path, headers=passed)

    response = await with_keys(call.state, provider, send)
    await _stream(call, response)


async def _stream(call: Call, response: UpstreamResponse) -> None:
    """The upstream's file as it comes (video bytes are not redacted: no secret is in a video)."""
    try:
        if response.status >= 400 and response.status != 416:
            data = call.state.store.current.redactor.data(await response.read())
            raise UpstreamError(
                f"the upstream has no file for this video: HTTP {response.status}: {snippet(data)}",
                status=404 if response.status == 404 else 502,
            )
        headers = [(h, response.headers[h]) for h in _PASSED if h in response.headers]
        transport = call.proto.response_stream(response.status, headers)
        try:
            async for chunk in response.chunks():
                await transport.send_bytes(chunk)
        except (UpstreamTimeout, UpstreamConnectError, OSError) as exc:  # headers are out: end short
            log.warning("video download cut: %s", exc)
    finally:
        await response.aclose()


CREATE = Endpoint(create, "openai", "videos")
LIST = Endpoint(list_videos, "openai")
_RETRIEVE = Endpoint(retrieve, "openai")
_DELETE = Endpoint(delete, "openai")
_CONTENT = Endpoint(content, "openai")


async def _remix(call: Call) -> None:
    await remix(call, _video_id(call)[0])


_REMIX = Endpoint(_remix, "openai", "videos/remix")


def dynamic_route(method: str, path: str) -> Endpoint | None:
    """`/v1/videos/{id}`, `/v1/videos/{id}/content`, `/v1/videos/{id}/remix`."""
    match = _PATH.match(path) if path.startswith("/v1/videos/") else None
    if match is None:
        return None
    sub = match.group(2)
    if sub is None:
        return {"GET": _RETRIEVE, "DELETE": _DELETE}.get(method)
    if sub == "content":
        return _CONTENT if method == "GET" else None
    return _REMIX if method == "POST" else None
