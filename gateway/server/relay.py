"""The relay: try the admitted request's upstreams in order (tiers, weights, fallbacks,
breakers, provider key rotation) until one answers, then hand its answer to `deliver`.

Per request: one msgspec decode of the fields the gateway needs (admission.py), a memoized rule
decision, a weighted choice of upstream, and the upstream's bytes streamed straight back.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..config.snapshot import ProviderRuntime, RouteTarget, Snapshot
from ..errors import GatewayError, UpstreamError
from ..providers import all_codecs  # noqa: F401  (registers every codec)
from ..providers.base import UpstreamCall, UpstreamResponse
from ..providers.codec import Codec, NoCodec, Outgoing, codec_for
from ..providers.registry import adapter_for
from ..providers.transport.base import UpstreamConnectError, UpstreamTimeout
from ..redact import Redactor
from ..routing.select import candidates
from .admission import MULTIPART_ENDPOINTS, Prepared, admit, decide, estimate_tokens, prepare
from .deliver import deliver
from .exchange import Exchange
from .state import WorkerState

__all__ = ["Prepared", "admit", "decide", "estimate_tokens", "prepare", "relay"]  # re-exported


class AttemptFailed(Exception):
    """A retryable failure of one upstream before any byte reached the client."""

    def __init__(self, provider: str, detail: str, status: int = 502) -> None:
        super().__init__(detail)
        self.provider, self.detail, self.status = provider, detail, status


async def relay(state: WorkerState, snap: Snapshot, proto: Any, x: Exchange, p: Prepared) -> None:
    """Try the route's upstreams in order until one answers; relay its answer."""
    routing = snap.settings.routing
    last: AttemptFailed | None = None
    for target in candidates(snap, p.route, state.rng, state.round_robin):
        if x.attempts >= routing.max_attempts:
            break
        breaker = state.breakers.get(target.provider, routing.breaker)
        if not breaker.allow():
            continue
        try:
            response, codec, out = await attempt(state, snap, p, target, x)
        except AttemptFailed as failed:
            breaker.failure()
            last = failed
            continue
        except GatewayError:
            breaker.success()  # the upstream answered; the request itself was refused
            raise
        try:
            await deliver(proto, response, codec, out, p, target, x, snap.redactor)
        except UpstreamError:  # a cut or unreadable answer: not retried (it may have run), but counted
            breaker.failure()
            raise
        breaker.success()
        return
    raise exhausted(p, x, last)


def exhausted(p: Prepared, x: Exchange, last: AttemptFailed | None) -> GatewayError:
    if last is None:
        return UpstreamError(
            f"no upstream is available for `{p.route.name}` right now (all are cooling down after failures)",
            status=503,
            code="no_upstream_available",
        )
    status = last.status if last.status in (429, 504) else 502
    return UpstreamError(
        f"all {x.attempts} upstream attempt(s) failed; last: provider {last.provider}: {last.detail}",
        status=status,
        code="upstream_rate_limited" if status == 429 else "upstream_failed",
    )


async def attempt(
    state: WorkerState, snap: Snapshot, p: Prepared, target: RouteTarget, x: Exchange
) -> tuple[UpstreamResponse, Codec, Outgoing]:
    provider = snap.providers[target.provider]
    try:
        codec = codec_for(p.client_family, provider.kind, x.endpoint)
    except NoCodec as exc:
        raise AttemptFailed(provider.id, str(exc)) from None
    ring = state.keyring(provider)
    adapter = adapter_for(provider.kind)
    out = Outgoing(
        endpoint=x.endpoint,
        body=p.body,
        model=p.head.model or "",
        upstream_model=target.model,
        stream=p.head.stream,
        client_wants_usage=p.head.client_wants_usage,
        multipart=x.endpoint in MULTIPART_ENDPOINTS,
        provider=provider,
    )
    endpoint, body = codec.request(out)
    for api_key in ring.rotation():
        check_budget(x, snap.settings.routing.max_attempts, provider)
        x.attempts += 1
        x.provider, x.served_model = provider.id, target.model
        call = UpstreamCall(
            provider=provider,
            endpoint=endpoint,
            method="POST",
            model=target.model,
            body=body,
            content_type=p.content_type,
            stream=p.head.stream,
            api_key=api_key,
            headers=p.decision.headers,
        )
        try:
            response = await adapter.send(call, state.client)
        except (UpstreamTimeout, TimeoutError):
            raise AttemptFailed(provider.id, "timed out waiting for the upstream", 504) from None
        except (UpstreamConnectError, OSError) as exc:
            raise AttemptFailed(provider.id, f"connection failed ({exc})") from None
        if response.status < 400:
            return response, codec, out
        detail = await upstream_error_detail(response, snap.redactor)
        if response.status in (401, 403):
            ring.bench(api_key)  # this key is refused; the provider's other keys may serve
            continue
        if response.status in snap.settings.routing.retry_on:
            raise AttemptFailed(provider.id, f"HTTP {response.status}: {detail}", response.status)
        raise UpstreamError(
            f"upstream {provider.id} refused the request: {detail}",
            status=response.status,
            code="upstream_error",
        )
    raise AttemptFailed(provider.id, "every api key of this provider was refused", 502)


def check_budget(x: Exchange, max_attempts: int, provider: ProviderRuntime) -> None:
    """Every upstream delivery counts against `max_attempts` and the provider's total timeout,
    whichever key or candidate it goes to."""
    if x.attempts >= max_attempts:
        raise AttemptFailed(provider.id, f"stopped after {x.attempts} attempt(s) (max_attempts)", 502)
    if x.elapsed() >= provider.timeouts.total:
        raise AttemptFailed(provider.id, "the total timeout passed before another attempt", 504)


class _ErrorDoc(msgspec.Struct):
    error: Any = None
    message: str | None = None


async def upstream_error_detail(response: UpstreamResponse, redactor: Redactor) -> str:
    """A short reason from an upstream error body, with the provider's keys scrubbed out."""
    try:
        raw = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError):
        return "no response body"
    text = raw[:2000].decode("utf-8", "replace")
    try:
        doc = msgspec.json.decode(raw, type=_ErrorDoc)
        err = doc.error
        text = (err.get("message") if isinstance(err, dict) else err) or doc.message or text
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    return redactor.text(str(text))[:500]
