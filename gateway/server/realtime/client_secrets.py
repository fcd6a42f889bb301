"""`POST /v1/realtime/client_secrets`: an ephemeral key for a browser's Realtime session, minted
by an `openai` provider with its own API key. Admitted like any request (key, the model of
`session.model`, rules, limits) and relayed as a plain POST; free (no tokens are used)."""

from __future__ import annotations

from typing import Any

import msgspec

from ...config.snapshot import ProviderRuntime, RouteTarget
from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ...providers.adapters.base import UpstreamCall, UpstreamResponse
from ...providers.adapters.registry import adapter_for
from ...providers.transport.base import UpstreamConnectError, UpstreamTimeout
from ...providers.wire.head import Head
from ...routing.select import candidates
from ..admission import admit, read_request
from ..attempts import AttemptFailed, Attempts, Exhausted, KeyRefused, Send
from ..auth import presented_key
from ..envelope import Call, Endpoint
from ..http import JSON, json_body
from ..relay import upstream_error_detail

ENDPOINT = "realtime/client_secrets"


class _Session(msgspec.Struct):
    model: str | None = None


class _Body(msgspec.Struct):
    session: _Session | None = None


async def handle(call: Call) -> None:
    state, snap, x = call.state, call.snap, call.x
    ip, key, body = await read_request(state, snap, call.scope, call.proto, x, presented_key(call.scope))
    body = json_body(call.scope, body)
    try:
        doc = msgspec.json.decode(body, type=_Body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid JSON body: {exc}") from None
    model = doc.session.model if doc.session else None
    p = admit(snap, key, Head(model=model), body, JSON, x, ip, "openai",
              usage=await state.limiter.usage(snap, key))
    await call.admit(key, p.route.name, 0)
    x.usage = TokenUsage(source="none")  # minting a key uses no tokens

    def for_target(provider: ProviderRuntime, target: RouteTarget) -> Send[UpstreamResponse]:
        if provider.kind != "openai":
            raise AttemptFailed(provider.id, f"provider kind {provider.kind} mints no realtime client "
                                "secrets", breaker=False)
        out = body if target.model == model else _with_model(body, target.model)

        async def send(api_key: str) -> UpstreamResponse:
            upstream = UpstreamCall(provider=provider, endpoint=ENDPOINT, method="POST", model=target.model,
                                    body=out, content_type=JSON, stream=False, api_key=api_key,
                                    headers=p.decision.headers)
            try:
                response = await adapter_for(provider.kind).send(upstream, state.client)
            except (UpstreamTimeout, TimeoutError):
                raise AttemptFailed(provider.id, "timed out waiting for the upstream", 504) from None
            except (UpstreamConnectError, OSError) as exc:
                raise AttemptFailed(provider.id, f"connection failed ({exc})") from None
            if response.status in (401, 403):
                raise KeyRefused(await upstream_error_detail(response, snap.redactor))
            return response

        return send

    try:
        response = await Attempts(state, snap, x).first(
            candidates(snap, p.route, state.rng, state.round_robin), for_target)
    except Exhausted as none:
        raise none.error(x, f"no upstream mints realtime client secrets for `{p.route.name}`") from None
    answer = await response.read()
    if response.status >= 400:
        detail = await _detail(answer, snap.redactor.text)
        raise UpstreamError(f"upstream refused the client secret: {detail}", status=response.status,
                            code="upstream_error")
    x.status = response.status
    call.proto.response_bytes(response.status, [("content-type", JSON), ("x-request-id", x.request_id)],
                              answer)


def _with_model(body: bytes, model: str) -> bytes:
    doc: dict[str, Any] = msgspec.json.decode(body)
    doc["session"]["model"] = model
    return msgspec.json.encode(doc)


async def _detail(raw: bytes, redact: Any) -> str:
    return str(redact(raw[:500].decode("utf-8", "replace")))


CLIENT_SECRETS = Endpoint(handle, "openai", ENDPOINT)
