"""One call to an asynchronous media upstream (videos, Veo, Suno) with one API key, and the
task reads that rotate a provider's keys through the attempt engine (no breaker, no attempt
count: the background poller and task reads are not a client's request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..config.snapshot import ProviderRuntime, RouteTarget
from ..errors import UpstreamError
from ..providers.adapters.media import send_media
from ..providers.transport.base import (
    UpstreamConnectError,
    UpstreamMaybeSent,
    UpstreamResponse,
    UpstreamTimeout,
)
from .attempts import AttemptFailed, Attempts, KeyRefused
from .state import WorkerState

T = TypeVar("T")
JSON = "application/json"


async def open_call(
    state: WorkerState, provider: ProviderRuntime, api_key: str, method: str, path: str,
    body: bytes = b"", content_type: str = JSON, headers: tuple[tuple[str, str], ...] = (),
) -> UpstreamResponse:  # fmt: skip
    """The upstream's response, its body unread. `KeyRefused` on 401/403 (body closed)."""
    try:
        response = await send_media(
            state.client, provider, api_key, method, path, body, content_type, headers
        )
    except (UpstreamTimeout, TimeoutError):
        raise AttemptFailed(provider.id, "timed out waiting for the upstream", 504, maybe_sent=True) from None
    except UpstreamMaybeSent as exc:
        raise AttemptFailed(provider.id, f"connection failed ({exc})", maybe_sent=True) from None
    except (UpstreamConnectError, OSError) as exc:
        raise AttemptFailed(provider.id, f"connection failed ({exc})") from None
    if response.status in (401, 403):
        await response.aclose()
        raise KeyRefused(f"HTTP {response.status}")
    return response


async def call_once(
    state: WorkerState, provider: ProviderRuntime, api_key: str, method: str, path: str,
    body: bytes = b"", content_type: str = JSON, headers: tuple[tuple[str, str], ...] = (),
) -> tuple[int, bytes]:  # fmt: skip
    """(status, body), the body with every configured secret masked (an upstream may echo one)."""
    response = await open_call(state, provider, api_key, method, path, body, content_type, headers)
    try:
        data = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError) as exc:
        raise AttemptFailed(provider.id, f"the answer was cut ({exc})", maybe_sent=True) from None
    return response.status, state.store.current.redactor.data(data)


async def with_keys(state: WorkerState, provider: ProviderRuntime, send: Callable[[str], Awaitable[T]]) -> T:
    """`send(api_key)` with the provider's keys in rotation; `UpstreamError` when none serves."""
    engine = Attempts(state, state.store.current, None, breakers=False)
    try:
        return await engine.with_keys(provider, RouteTarget(provider.id, "", 1, 0), send)
    except AttemptFailed as exc:
        raise UpstreamError(f"provider {provider.id}: {exc.detail}", status=exc.status) from None


async def read(state: WorkerState, provider: ProviderRuntime, method: str, path: str) -> tuple[int, bytes]:
    """A task read from the upstream that runs the task."""

    async def send(api_key: str) -> tuple[int, bytes]:
        return await call_once(state, provider, api_key, method, path)

    return await with_keys(state, provider, send)


def snippet(data: bytes) -> str:
    """A short reason from an upstream body (already redacted)."""
    return data[:300].decode("utf-8", "replace")
