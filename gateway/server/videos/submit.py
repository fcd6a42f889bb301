"""`POST /v1/videos` and `POST /v1/videos/{id}/remix`: admitted like any model request (the
key's allow-list, the rules, the model's route over openai, azure and gemini providers), priced
per second of video by model and size (billing/pricing.py `seconds_cost`), that price reserved
against the key's budgets before anything is sent, then charged on the submit's usage row. The
engine refunds it if the video fails (docs/tasks.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from ...billing.pricing import seconds_cost
from ...config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ...providers.adapters.media import VIDEO_KINDS
from ...providers.wire.head import Head
from ...routing.select import candidates
from ..admission import admit, decide, read_request
from ..auth import check_model, presented_key
from ..envelope import Call
from ..exchange import Exchange
from ..http import JSON
from ..task_submit import forward_first, new_row, store_charged
from .adapter import FAMILY, owned_video, runtime
from .parse import VideoRequest, parse_create, parse_remix
from .upstream import VEO, create_call, first_doc, new_id, read_created, remix_call


def _cost(snap: Snapshot, provider: str, model: str, seconds: int, size: str, x: Exchange) -> Decimal | None:
    return seconds_cost(snap.price_for(provider, model), seconds, size, x.multiplier())


def _serves(snap: Snapshot, target: RouteTarget, req: VideoRequest) -> bool:
    provider = snap.providers.get(target.provider)
    if provider is None or provider.kind not in VIDEO_KINDS:
        return False
    return not (provider.kind == VEO and (req.has_file or (req.is_form and b"input_reference" in req.body)))


def _reply(call: Call, doc: bytes, provider: ProviderRuntime, limit_headers: list[tuple[str, str]]) -> None:
    call.x.status = 200
    headers = [
        ("content-type", JSON),
        ("x-request-id", call.x.request_id),
        ("x-tollgate-provider", provider.id),
        *limit_headers,
    ]
    call.proto.response_bytes(200, headers, doc)


async def create(call: Call) -> None:
    state, snap, scope, x = call.state, call.snap, call.scope, call.x
    x.usage = TokenUsage(source="none")  # billed per second of video (x.action_cost), not per token
    tasks = runtime(state)
    ip, key, body = await read_request(state, snap, scope, call.proto, x, presented_key(scope))
    req = parse_create(str(scope.headers.get("content-type") or ""), body)
    p = admit(snap, key, Head(model=req.model), body, req.content_type, x, ip, "openai")
    targets = [t for t in candidates(snap, p.route, state.rng, state.round_robin) if _serves(snap, t, req)]
    costs = {
        (t.provider, t.model): _cost(snap, t.provider, t.model, req.seconds, req.size, x) for t in targets
    }
    if snap.settings.pricing == "strict":  # never a video at a silent $0
        targets = [t for t in targets if costs[(t.provider, t.model)] is not None]
    if not targets:
        raise InvalidRequest(
            f"the model `{req.model}` has no video provider with a per_second price on this gateway",
            code="model_not_supported",
            param="model",
        )
    reserve = max((c for c in costs.values() if c is not None), default=None)
    limit_headers = await call.admit(key, p.route.name, 0, reserve_usd=reserve)

    def make(provider: ProviderRuntime, target: RouteTarget) -> tuple[str, bytes, str]:
        return create_call(provider, req, target.model)

    provider, target, status, data = await forward_first(
        state, snap, x, targets, make, p.decision.headers, "video"
    )
    upstream_id, _ = read_created(provider, status, data)
    video_id = new_id() if provider.kind == VEO else upstream_id
    state_, doc = first_doc(provider, video_id, data, req.model, req.prompt, req.seconds, req.size)
    row = new_row(
        snap,
        x,
        key,
        FAMILY,
        provider,
        target,
        video_id,
        upstream_id,
        "video",
        costs[(target.provider, target.model)],
        state_,
        doc,
    )
    stored = await store_charged(tasks, x, row)
    if stored.id != video_id:  # another upstream used this id first: the gateway's id differs
        doc = first_doc(provider, stored.id, data, req.model, req.prompt, req.seconds, req.size)[1]
        await tasks.store.update(stored.id, state_, doc, False, stored.submitted_at)
    _reply(call, doc, provider, limit_headers)


def _video_fields(doc: bytes) -> tuple[int, str]:
    fields: dict[str, Any] = msgspec.json.decode(doc)
    try:
        return int(fields.get("seconds") or 0), str(fields.get("size") or "")
    except (TypeError, ValueError):
        return 0, str(fields.get("size") or "")


async def remix(call: Call, video_id: str) -> None:
    state, snap, scope, x = call.state, call.snap, call.scope, call.x
    x.usage = TokenUsage(source="none")
    tasks = runtime(state)
    ip, key, body = await read_request(state, snap, scope, call.proto, x, presented_key(scope))
    source = await owned_video(tasks, key.id, video_id)
    prompt = parse_remix(body)
    provider = snap.providers.get(source.provider)
    if provider is None:
        raise UpstreamError(
            f"the provider {source.provider} of this video is no longer configured", status=503
        )
    if provider.kind == VEO:
        raise InvalidRequest("remix is not available for Veo videos", code="unsupported_remix")
    _admit_follow_up(snap, key, source.requested_model, x, ip)
    seconds, size = _video_fields(source.doc)
    cost = _cost(snap, provider.id, source.model, seconds, size, x)
    if cost is None and snap.settings.pricing == "strict":
        raise InvalidRequest(
            f"the model `{source.model}` has no per_second price", code="model_not_supported"
        )
    limit_headers = await call.admit(key, source.requested_model, 0, reserve_usd=cost)
    path, remix_body = remix_call(source, prompt)
    target = RouteTarget(provider.id, source.model, 1, 0)
    _, _, status, data = await forward_first(
        state, snap, x, (target,), lambda _p, _t: (path, remix_body, JSON), (), "video remix"
    )
    upstream_id, _ = read_created(provider, status, data)
    _, doc = first_doc(provider, upstream_id, data, source.requested_model, prompt, seconds, size, source.id)
    row = new_row(
        snap,
        x,
        key,
        FAMILY,
        provider,
        target,
        upstream_id,
        upstream_id,
        "video_remix",
        cost,
        msgspec.json.decode(doc, type=dict[str, Any]).get("status", "queued"),
        doc,
    )
    stored = await store_charged(tasks, x, row)
    if stored.id != upstream_id:
        doc = first_doc(provider, stored.id, data, source.requested_model, prompt, seconds, size, source.id)[
            1
        ]
        await tasks.store.update(stored.id, stored.status, doc, False, stored.submitted_at)
    _reply(call, doc, provider, limit_headers)


def _admit_follow_up(snap: Snapshot, key: KeyRuntime, model: str, x: Exchange, ip: str) -> None:
    x.requested_model = model
    check_model(key, model)
    decision = decide(snap, key, Head(model=model), x.endpoint, ip)
    x.tags = key.tags + tuple(t for t in decision.tags if t not in key.tags)
