"""The provider's Realtime WebSocket: its URL and auth for each provider kind, opened through the
attempt engine (candidates, breakers, the provider's API keys in rotation), so the upstream key
is always the provider's, never the client's."""

from __future__ import annotations

from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ...config.snapshot import ProviderRuntime, RouteTarget, Snapshot
from ...config.types import AzureProvider
from ...routing.select import candidates
from ..attempts import AttemptFailed, Attempts, Exhausted, KeyRefused, Send
from ..exchange import Exchange
from ..rsgi import Scope
from ..state import WorkerState
from .connect import Session

# client headers that shape the upstream session (the beta interface, the client's own tracing)
Opened = tuple[ClientConnection, RouteTarget]
FORWARDED_HEADERS = ("openai-beta", "openai-organization", "openai-project")


def upstream_url(provider: ProviderRuntime, model: str, query: list[tuple[str, str]]) -> tuple[str, str]:
    """(ws URL, name of the auth header) of `model` on `provider`; AttemptFailed for a kind
    without a Realtime API."""
    base = provider.base_url.rstrip("/")
    base = "ws" + base[4:] if base.startswith("http") else base  # http -> ws, https -> wss
    spec = provider.spec
    if isinstance(spec, AzureProvider):
        deployment = spec.deployments.get(model, model)
        params = [("api-version", spec.api_version), ("deployment", deployment), *query]
        return f"{base}/openai/realtime?{urlencode(params)}", "api-key"
    if provider.kind == "openai":
        return f"{base}/realtime?{urlencode([('model', model), *query])}", "authorization"
    raise AttemptFailed(provider.id, f"provider kind {provider.kind} does not serve the Realtime API",
                        breaker=False)


def _auth(name: str, api_key: str) -> dict[str, str]:
    if not api_key:
        return {}  # a keyless provider (its pseudo-key, providers/keyring.py)
    return {name: f"Bearer {api_key}" if name == "authorization" else api_key}


async def open_upstream(
    state: WorkerState, snap: Snapshot, scope: Scope, s: Session, x: Exchange
) -> Opened:
    """The first candidate's WebSocket that opens; `Exhausted.error` when none does."""
    engine = Attempts(state, snap, x)
    forwarded = {h: str(v) for h in FORWARDED_HEADERS if (v := scope.headers.get(h))}
    limit = state.settings.realtime_max_frame_bytes

    def for_target(provider: ProviderRuntime, target: RouteTarget) -> Send[Opened]:
        url, auth = upstream_url(provider, target.model, s.query)

        async def send(api_key: str) -> Opened:
            headers = {**dict(provider.headers), **forwarded, **dict(s.decision.headers),
                       **_auth(auth, api_key)}
            try:
                ws = await connect(
                    url, additional_headers=headers, max_size=limit, compression=None,
                    open_timeout=provider.timeouts.connect, user_agent_header="tollgate",
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                detail = snap.redactor.text(bytes(exc.response.body or b"")[:300].decode("utf-8", "replace"))
                if status in (401, 403):
                    raise KeyRefused(detail) from None
                raise AttemptFailed(provider.id, f"HTTP {status} at the WebSocket upgrade: {detail}",
                                    status if status in (429, 504) else 502) from None
            except TimeoutError:
                raise AttemptFailed(provider.id, "timed out opening the upstream WebSocket", 504) from None
            except (InvalidHandshake, OSError) as exc:
                raise AttemptFailed(provider.id, f"WebSocket connection failed ({exc})") from None
            return ws, target

        return send

    try:
        return await engine.first(candidates(snap, s.route, state.rng, state.round_robin), for_target)
    except Exhausted as none:
        raise none.error(x, f"no upstream is available for `{s.route.name}` right now") from None
