"""Token counting: Anthropic `POST /v1/messages/count_tokens` and Gemini
`POST /v1beta/models/{model}:countTokens` (also under `/v1/models/`).

The request is admitted exactly like the family's chat request (key, model allow-list, rules,
route; see native.py). When the route's first upstream speaks the same family (an `anthropic`
provider for count_tokens, a `gemini` one for countTokens) the request goes to that upstream's
own count endpoint with the served model and a provider key, and its answer is returned as is.
Otherwise (another family, a mock provider, or the upstream count call fails) the gateway answers
with a local estimate (`estimate_count`). The `x-tollgate-token-count` response header says
which: `upstream` or `estimated`.

Counting is free: the request's usage row (endpoint `messages/count_tokens` or `countTokens`)
has no tokens and no cost (`usage_source` = "none"), so it spends no budget, and no
rpm/tpm/concurrency slot is taken (the limiter's `admit` is never called).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..config.snapshot import ProviderRuntime, Route, RouteTarget, Snapshot
from ..config.types import AnthropicProvider
from ..core.usage import TokenUsage
from ..errors import InvalidRequest
from ..providers.adapters.anthropic import messages_url
from ..providers.adapters.base import UpstreamCall, send_http
from ..providers.adapters.gemini import generate_url
from ..providers.transport.base import UpstreamConnectError, UpstreamTimeout
from ..providers.wire.head import rewrite_json
from ..routing.select import candidates
from .admission import Prepared
from .attempts import AttemptFailed, Attempts, KeyRefused
from .count_shapes import check_anthropic, check_gemini
from .envelope import Call, Endpoint
from .exchange import Exchange
from .native import prepare_anthropic, prepare_gemini
from .rsgi import Proto, Scope
from .state import WorkerState

log = logging.getLogger("tollgate")
PrepareFn = Callable[[WorkerState, Snapshot, Any, Any, Exchange], Awaitable[Prepared]]

CHARS_PER_TOKEN = 4  # the ratio the gateway uses for reservations and cut streams too
MESSAGE_OVERHEAD = 4  # role and turn framing, per message / content
BASE_OVERHEAD = 3  # a request's own framing
MEDIA_TOKENS = 1000  # an inline image, audio or document blob: a flat guess, not its base64 size
SOURCE_HEADER = "x-tollgate-token-count"

# -- the local estimate -------------------------------------------------------------------------


def text_size(node: Any) -> tuple[int, int]:
    """(characters, media blobs) of a JSON value: every string and number counts, object keys too
    (tool schemas are mostly keys); an inline blob (`{"data": ..., "media_type"|"mimeType": ...}`)
    counts as one media item instead of its base64 size. Iterative: any nesting depth is fine."""
    chars = media = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            blob = "data" in item and any(k in item for k in ("media_type", "mimeType", "mime_type"))
            media += int(blob)
            for k, v in item.items():
                if not (blob and k == "data"):
                    chars += len(str(k))
                    stack.append(v)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            chars += len(str(item))
    return chars, media


def estimate_count(messages: list[Any], *extras: Any) -> int:
    """ceil(chars / 4) over the text of the messages and of `extras` (system prompt, tools),
    plus 4 tokens a message, 3 a request, and a flat 1,000 per inline media blob."""
    chars, media = text_size([messages, *extras])
    overhead = BASE_OVERHEAD + MESSAGE_OVERHEAD * len(messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + overhead + MEDIA_TOKENS * media


def anthropic_estimate(doc: dict[str, Any]) -> int:
    check_anthropic(doc)
    return estimate_count(_list(doc.get("messages")), doc.get("system"), doc.get("tools"))


def gemini_parts(doc: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(contents, extras) of a countTokens body: `contents`, or a whole `generateContentRequest`."""
    inner = doc.get("generateContentRequest")
    if isinstance(inner, dict) and isinstance(inner.get("contents"), list):
        check_gemini(inner["contents"], "generateContentRequest.contents")
        return inner["contents"], [inner.get("systemInstruction"), inner.get("tools")]
    if isinstance(doc.get("contents"), list):
        check_gemini(doc["contents"], "contents")
        return doc["contents"], [doc.get("systemInstruction"), doc.get("tools")]
    raise InvalidRequest("contents: field required (or generateContentRequest.contents)", param="contents")


def gemini_estimate(doc: dict[str, Any]) -> int:
    contents, extras = gemini_parts(doc)
    return estimate_count(contents, *extras)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return doc


# -- the upstream's own count endpoint ----------------------------------------------------------


def first_target(state: WorkerState, snap: Snapshot, route: Route) -> RouteTarget | None:
    """The upstream the relay would try first (skipping those whose breaker is open)."""
    settings = snap.settings.routing.breaker
    for target in candidates(snap, route, state.rng, state.round_robin):
        if state.breakers.get(target.provider, settings).state() != "open":
            return target
    return None


Outbound = tuple[UpstreamCall, str, dict[str, str]]  # the call, its URL, its auth headers


def anthropic_call(provider: ProviderRuntime, p: Prepared, served: str, api_key: str) -> Outbound:
    spec = provider.spec
    version = spec.anthropic_version if isinstance(spec, AnthropicProvider) else "2023-06-01"
    body = rewrite_json(p.body, served, False)
    call = _call(provider, p, "messages/count_tokens", served, body, api_key)
    auth = {"x-api-key": api_key, "anthropic-version": version}
    return call, f"{messages_url(provider.base_url)}/count_tokens", auth


def gemini_call(provider: ProviderRuntime, p: Prepared, served: str, api_key: str) -> Outbound:
    doc = json_object(p.body)
    inner = doc.get("generateContentRequest")
    body = p.body
    if isinstance(inner, dict):  # its `model` must name the served model too
        inner["model"] = "models/" + served.removeprefix("models/")
        body = msgspec.json.encode(doc)
    url = generate_url(provider.base_url, served, False).rpartition(":")[0] + ":countTokens"
    call = _call(provider, p, "countTokens", served, body, api_key)
    return call, url, {"x-goog-api-key": api_key}


def _call(
    provider: ProviderRuntime, p: Prepared, endpoint: str, served: str, body: bytes, api_key: str
) -> UpstreamCall:
    return UpstreamCall(provider=provider, endpoint=endpoint, method="POST", model=served, body=body,
                        content_type="application/json", stream=False, api_key=api_key,
                        headers=p.decision.headers)


CallFn = Callable[[ProviderRuntime, Prepared, str, str], Outbound]


async def upstream_count(
    state: WorkerState, snap: Snapshot, provider: ProviderRuntime, target: RouteTarget, p: Prepared,
    family: Family, x: Exchange,
) -> bytes | None:  # fmt: skip
    """The upstream's answer when it gives a count in `family.field`; None on any failure. Keys
    rotate through the attempt engine (each one tried counts, within max_attempts)."""

    async def send(api_key: str) -> bytes | None:
        call, url, auth = family.build(provider, p, target.model, api_key)
        try:
            response = await send_http(state.client, call, url, auth)
            raw = await response.read()
        except (UpstreamTimeout, UpstreamConnectError, TimeoutError, OSError) as exc:
            log.info("count tokens: upstream %s failed (%s); estimating", provider.id, type(exc).__name__)
            return None
        if response.status in (401, 403):
            raise KeyRefused(f"HTTP {response.status}")
        if response.status >= 400:
            log.info("count tokens: upstream %s answered %s; estimating", provider.id, response.status)
            return None
        return raw if _has_count(raw, family.field) else None

    try:
        return await Attempts(state, snap, x, breakers=False).with_keys(provider, target, send)
    except AttemptFailed:
        return None


def _has_count(raw: bytes, field: str) -> bool:
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get(field), int)


# -- the handlers -------------------------------------------------------------------------------


class Family:
    """What differs between the two count endpoints."""

    def __init__(self, name: str, endpoint: str, kind: str, field: str,
                 prepare: PrepareFn, build: CallFn, estimate: Callable[[dict[str, Any]], int]) -> None:
        self.name, self.endpoint, self.kind, self.field = name, endpoint, kind, field
        self.prepare, self.build, self.estimate = prepare, build, estimate


async def count(
    state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, family: Family, x: Exchange
) -> None:
    try:
        p = await family.prepare(state, snap, scope, proto, x)
    except RecursionError:  # msgspec on absurdly nested JSON, should a decoder let it out
        raise InvalidRequest("the request body is nested too deeply") from None
    estimate = family.estimate(json_object(p.body))  # validates the body before any upstream call
    target = first_target(state, snap, p.route)
    provider = snap.providers.get(target.provider) if target else None
    if target is not None and provider is not None and provider.kind == family.kind:
        raw = await upstream_count(state, snap, provider, target, p, family, x)
        if raw is not None:
            x.status = 200
            proto.response_bytes(200, _headers("upstream", x), raw)
            return
    x.provider = x.served_model = None  # answered here
    x.status = 200
    proto.response_bytes(200, _headers("estimated", x), msgspec.json.encode({family.field: estimate}))


def _headers(source: str, x: Exchange) -> list[tuple[str, str]]:
    return [("content-type", "application/json"), (SOURCE_HEADER, source), ("x-request-id", x.request_id)]


def endpoint(family: Family) -> Endpoint:
    """A count endpoint of the envelope: recorded (no tokens, no cost), never limited."""

    async def handle(call: Call) -> None:
        call.x.usage = TokenUsage(source="none")  # free: never priced
        await count(call.state, call.snap, call.scope, call.proto, family, call.x)

    return Endpoint(handle, family.name, family.endpoint)


ANTHROPIC = Family("anthropic", "messages/count_tokens", "anthropic", "input_tokens",
                   prepare_anthropic, anthropic_call, anthropic_estimate)
GEMINI = Family("gemini", "countTokens", "gemini", "totalTokens",
                prepare_gemini, gemini_call, gemini_estimate)
anthropic_count_tokens = endpoint(ANTHROPIC)
gemini_count_tokens = endpoint(GEMINI)
