"""Plumbing shared by the Midjourney endpoints: client auth, task ownership, and
one upstream delivery (`deliver_once`) whose keys rotate through the attempt engine."""

from __future__ import annotations

import logging

from ...config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ...errors import NotFound
from ...midjourney.tasks import MjRuntime, TaskRow
from ...providers.adapters.base import UpstreamCall
from ...providers.adapters.registry import adapter_for
from ...providers.transport.base import UpstreamConnectError, UpstreamMaybeSent, UpstreamTimeout
from ...providers.wire.midjourney import SECRET_HEADER
from ..attempts import AttemptFailed, Attempts, KeyRefused
from ..auth import authenticate, presented_key
from ..http import JSON, client_ip
from ..rsgi import Scope
from ..state import WorkerState

log = logging.getLogger("tollgate.midjourney")


def mj_secret(scope: Scope) -> str | None:
    """`Authorization: Bearer <key>` or the proxy's own `mj-api-secret: <key>`."""
    return presented_key(scope, (SECRET_HEADER,))


def mj_key(state: WorkerState, snap: Snapshot, scope: Scope) -> KeyRuntime:
    return authenticate(snap, mj_secret(scope), client_ip(scope, state.settings.trust_forwarded))


def task_not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id[:100]} not found", code="task_not_found")


async def owned_task(mj: MjRuntime, key: KeyRuntime, task_id: str) -> TaskRow:
    """The key's task; another key's task is as unknown as a task that never existed."""
    task = await mj.store.get(task_id)
    if task is None or task.key_id != key.id or task.family != "midjourney":
        raise task_not_found(task_id)
    return task


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
        raise AttemptFailed(provider.id, "timed out waiting for the upstream", 504, maybe_sent=True) from None
    except UpstreamMaybeSent as exc:
        raise AttemptFailed(provider.id, f"connection failed ({exc})", maybe_sent=True) from None
    except (UpstreamConnectError, OSError) as exc:
        raise AttemptFailed(provider.id, f"connection failed ({exc})") from None
    try:
        data = await response.read()
    except (UpstreamTimeout, UpstreamConnectError, OSError) as exc:
        raise AttemptFailed(provider.id, f"the answer was cut ({exc})", maybe_sent=True) from None
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
    return await engine.with_keys(provider, RouteTarget(provider.id, "", 1, 0), send)


def snippet(data: bytes) -> str:
    """A short reason from an upstream body (already redacted by `deliver_once`)."""
    return data[:500].decode("utf-8", "replace")
