"""Plumbing shared by the Midjourney endpoints: client auth, the per-worker task runtime, and
one upstream delivery (`deliver_once`) whose keys rotate through the attempt engine."""

from __future__ import annotations

import logging

from ...config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ...errors import NotFound
from ...providers.base import UpstreamCall
from ...providers.midjourney import SECRET_HEADER
from ...providers.registry import adapter_for
from ...providers.transport.base import UpstreamConnectError, UpstreamMaybeSent, UpstreamTimeout
from ..attempts import AttemptFailed, Attempts, KeyRefused
from ..auth import authenticate, presented_key
from ..exchange import Exchange
from ..http import JSON, client_ip
from ..intake import authenticate_request
from ..rsgi import Scope
from ..state import WorkerState
from .tasks import MjRuntime, TaskRow, TaskStore

log = logging.getLogger("tollgate.midjourney")


def runtime(state: WorkerState) -> MjRuntime:
    mj = state.midjourney
    if mj is None:  # a state built without App.start (tests): open on first use, no poller
        store = TaskStore(state.settings.data_dir / "midjourney.sqlite")
        mj = state.midjourney = MjRuntime(store, state.settings.mj_poll_s)
    return mj


def mj_key(state: WorkerState, snap: Snapshot, scope: Scope, x: Exchange | None = None) -> KeyRuntime:
    """`Authorization: Bearer <key>` or the proxy's own `mj-api-secret: <key>`; recorded on `x`
    (a billed endpoint's exchange) even when the key's IP allow-list refuses the request."""
    secret = presented_key(scope, (SECRET_HEADER,))
    ip = client_ip(scope, state.settings.trust_forwarded)
    if x is None:
        return authenticate(snap, secret, ip)
    return authenticate_request(snap, secret, ip, x)


def task_not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id[:100]} not found", code="task_not_found")


async def owned_task(mj: MjRuntime, key: KeyRuntime, task_id: str) -> TaskRow:
    """The key's task; another key's task is as unknown as a task that never existed."""
    task = await mj.store.get(task_id)
    if task is None or task.key_id != key.id:
        raise task_not_found(task_id)
    return task


class Unreachable(Exception):
    """The upstream gave no answer. `maybe_sent`: the request may have reached it (a timeout,
    a cut response), so a submit must not be retried elsewhere."""

    def __init__(self, provider: str, detail: str, status: int = 502, maybe_sent: bool = False) -> None:
        super().__init__(detail)
        self.provider, self.detail, self.status, self.maybe_sent = provider, detail, status, maybe_sent


async def deliver_once(
    state: WorkerState, provider: ProviderRuntime, api_key: str, method: str, endpoint: str,
    body: bytes | None = None, headers: tuple[tuple[str, str], ...] = (),
) -> tuple[int, bytes]:  # fmt: skip
    """One request to a midjourney-proxy with one API key: (status, body), the body with every
    configured secret masked (a proxy may echo its own). `KeyRefused` on 401/403."""
    call = UpstreamCall(
        provider=provider, endpoint=endpoint, method=method, model="", body=body or b"",
        content_type=JSON, stream=False, api_key=api_key, headers=headers,
    )  # fmt: skip
    try:
        response = await adapter_for(provider.kind).send(call, state.client)
    except (UpstreamTimeout, TimeoutError):
        raise Unreachable(provider.id, "timed out waiting for the upstream", 504, True) from None
    except UpstreamMaybeSent as exc:
        raise Unreachable(provider.id, f"connection failed ({exc})", 502, True) from None
    except (UpstreamConnectError, OSError) as exc:
        raise Unreachable(provider.id, f"connection failed ({exc})") from None
    try:
        data = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError) as exc:
        raise Unreachable(provider.id, f"the answer was cut ({exc})", 502, True) from None
    if response.status in (401, 403):
        raise KeyRefused(f"HTTP {response.status}")
    return response.status, state.store.current.redactor.data(data)


async def call_upstream(
    state: WorkerState, provider: ProviderRuntime, method: str, endpoint: str, body: bytes | None = None,
) -> tuple[int, bytes]:
    """A task read from the upstream that runs the task, its API keys in rotation (no breaker,
    no attempt count: not a client's request)."""

    async def send(api_key: str) -> tuple[int, bytes]:
        return await deliver_once(state, provider, api_key, method, endpoint, body)

    engine = Attempts(state, state.store.current, None, breakers=False)
    try:
        return await engine.with_keys(provider, RouteTarget(provider.id, "", 1, 0), send)
    except AttemptFailed as exc:
        raise Unreachable(provider.id, exc.detail, exc.status) from None


def scrub(data: bytes, provider: ProviderRuntime) -> str:
    """A short reason from an upstream body, without the provider's keys in it."""
    text = data[:500].decode("utf-8", "replace")
    for secret in provider.api_keys:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
