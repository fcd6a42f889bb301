"""The relay: the admitted request goes to its route's upstreams through the attempt engine
(attempts.py: tiers, weights, fallbacks, breakers, key rotation) until one answers; its answer
goes to `deliver`. `relay_endpoint` is the envelope's entry for a relayed endpoint.

Per request: one msgspec decode of the fields the gateway needs (admission.py), a memoized rule
decision, a weighted choice of upstream, and the upstream's bytes streamed straight back.
(docs/architecture.md, "The request path", step 7)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config.snapshot import ProviderRuntime, RouteTarget, Snapshot
from ..core.family import family_of
from ..errors import UpstreamError
from ..ops.errors import error_detail, error_parts
from ..providers.adapters.base import UpstreamCall, UpstreamResponse
from ..providers.adapters.registry import adapter_for
from ..providers.auth.base import CredentialsUnavailable
from ..providers.codecs import NoCodec, codec_for
from ..providers.translate.codec import Codec, Outgoing
from ..providers.translate.shaping import shape
from ..providers.transport.base import UpstreamConnectError, UpstreamTimeout
from ..redact import Redactor
from ..routing.select import candidates
from .admission import MULTIPART_ENDPOINTS, Prepared, admit, affinity_of, decide, estimate_tokens, prepare
from .attempts import AttemptFailed, Attempts, Exhausted, KeyRefused, Send
from .deliver import deliver
from .envelope import Call, Endpoint
from .exchange import Exchange
from .rsgi import Proto, Scope
from .state import WorkerState

__all__ = ["Prepared", "admit", "decide", "estimate_tokens", "prepare", "relay", "relay_endpoint"]
PrepareFn = Callable[[WorkerState, Snapshot, Scope, Proto, Exchange], Awaitable[Prepared]]
Answer = tuple[UpstreamResponse, Codec, Outgoing, RouteTarget]


def relay_endpoint(endpoint: str, prepare_fn: PrepareFn = prepare, family: str = "openai") -> Endpoint:
    """A relayed endpoint: `prepare_fn` reads the client's format; errors leave in `family`'s shape."""

    async def handle(call: Call) -> None:
        p = await prepare_fn(call.state, call.snap, call.scope, call.proto, call.x)
        p.extra_headers = await call.admit(p.key, p.route.name, estimate_tokens(p), p.head.token_limit)
        if p.route.affinity is not None:  # evaluated only for aliases that declare one
            call.x.affinity_key = affinity_of(p, call.x, call.scope, call.state.settings.trust_forwarded)
        await relay(call.state, call.snap, call.proto, call.x, p)

    return Endpoint(handle, family, endpoint, watch=True)


async def relay(state: WorkerState, snap: Snapshot, proto: Proto, x: Exchange, p: Prepared) -> None:
    """Try the route's upstreams in order until one answers; relay its answer."""
    engine = Attempts(state, snap, x, affinity=x.affinity_key)
    try:
        targets = candidates(snap, p.route, state.rng, state.round_robin, x.affinity_key)
        response, codec, out, target = await engine.first(targets, _upstream(state, snap, p, x))
    except Exhausted as none:
        raise none.error(x, f"no upstream is available for `{p.route.name}` right now (all are cooling down "
                            "after failures)") from None
    try:
        await deliver(proto, response, codec, out, p, target, x, snap.redactor)
    except UpstreamError:  # a cut or unreadable answer: not retried (it may have run), but counted
        state.breakers.get(target.provider, snap.settings.routing.breaker).failure()
        raise


def _upstream(
    state: WorkerState, snap: Snapshot, p: Prepared, x: Exchange
) -> Callable[[ProviderRuntime, RouteTarget], Send[Answer]]:
    """For one candidate: its codec and upstream body once, then one delivery per API key."""

    def for_target(provider: ProviderRuntime, target: RouteTarget) -> Send[Answer]:
        try:
            codec = codec_for(p.client_family, provider.kind, x.endpoint)
        except NoCodec as exc:
            raise AttemptFailed(provider.id, str(exc)) from None
        out = Outgoing(endpoint=x.endpoint, body=p.body, model=p.head.model or "",
                       upstream_model=target.model, stream=p.head.stream,
                       client_wants_usage=p.head.client_wants_usage,
                       multipart=x.endpoint in MULTIPART_ENDPOINTS, provider=provider)
        endpoint, body = codec.request(out)
        if not out.multipart and (provider.body or p.decision.body or p.route.reasoning):
            body = shape(body, family_of(provider.kind), endpoint, reasoning=p.route.reasoning,
                         rules=p.decision.body, provider=provider.body)
        adapter = adapter_for(provider.kind)

        async def send(api_key: str) -> Answer:
            call = UpstreamCall(provider=provider, endpoint=endpoint, method="POST", model=target.model,
                                body=body, content_type=p.content_type, stream=p.head.stream,
                                api_key=api_key, headers=p.decision.headers)
            try:
                response = await adapter.send(call, state.client)
            except (UpstreamTimeout, TimeoutError):
                raise AttemptFailed(provider.id, "timed out waiting for the upstream", 504) from None
            except (UpstreamConnectError, OSError) as exc:
                raise AttemptFailed(provider.id, f"connection failed ({exc})") from None
            except CredentialsUnavailable as exc:  # a cloud token or AWS keys: counted by the breaker
                raise AttemptFailed(provider.id, str(exc), 503) from None
            if response.status < 400:
                return response, codec, out, target
            raise await _refusal(response, provider, snap)

        return send

    return for_target


async def _refusal(response: UpstreamResponse, provider: ProviderRuntime, snap: Snapshot) -> Exception:
    """What an upstream's error status means for the engine."""
    detail, codes = await upstream_error_parts(response, snap.redactor)
    disable_on = provider.spec.disable_on
    if disable_on and (response.status in disable_on or any(c in disable_on for c in codes)):
        return KeyRefused(detail, response.status, until_test=True)  # benched until a test passes
    if response.status in (401, 403):
        return KeyRefused(detail, response.status)
    if response.status in snap.settings.routing.retry_on:
        return AttemptFailed(provider.id, f"HTTP {response.status}: {detail}", response.status)
    return UpstreamError(f"upstream {provider.id} refused the request: {detail}", status=response.status,
                         code="upstream_error")


async def upstream_error_parts(response: UpstreamResponse, redactor: Redactor) -> tuple[str, tuple[str, ...]]:
    """The message (as upstream_error_detail) and the error codes, for `disable_on`."""
    try:
        raw = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError):
        return "no response body", ()
    return error_parts(raw, redactor)


async def upstream_error_detail(response: UpstreamResponse, redactor: Redactor) -> str:
    """A short reason from an upstream error body, with the configured secrets masked."""
    try:
        raw = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError):
        return "no response body"
    return error_detail(raw, redactor)
