"""Plumbing shared by the Midjourney endpoints: the proxy's error shape, client auth, the
per-worker task runtime, and one upstream call with api-key rotation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from ..config.snapshot import KeyRuntime, ProviderRuntime, Snapshot
from ..errors import GatewayError, NotFound
from ..midjourney.tasks import TaskRow, TaskStore
from ..providers.base import UpstreamCall
from ..providers.midjourney import SECRET_HEADER
from ..providers.registry import adapter_for
from ..providers.transport.base import UpstreamConnectError, UpstreamMaybeSent, UpstreamTimeout
from .auth import authenticate, presented_key
from .exchange import Exchange
from .http import JSON, Headers, client_ip, send_error
from .intake import authenticate_request, discard_body
from .state import WorkerState

log = logging.getLogger("tollgate.midjourney")
Handler = Callable[[WorkerState, Any, Any], Awaitable[None]]


class MjRuntime:
    """One worker's Midjourney state: the shared task store and its background poller."""

    def __init__(self, store: TaskStore, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self.poller: asyncio.Task[None] | None = None


def runtime(state: WorkerState) -> MjRuntime:
    mj = state.midjourney
    if mj is None:  # a state built without App.start (tests): open on first use, no poller
        store = TaskStore(state.settings.data_dir / "midjourney.sqlite")
        mj = state.midjourney = MjRuntime(store, state.settings.mj_poll_s)
    return mj


def send_mj_error(proto: Any, err: GatewayError, headers: Headers | None = None) -> None:
    send_error(proto, err, "midjourney", headers)


def mj_endpoint(fn: Handler) -> Handler:
    """Errors of a Midjourney endpoint leave in the proxy's shape, never as a traceback."""

    @wraps(fn)
    async def handle(state: WorkerState, scope: Any, proto: Any) -> None:
        try:
            await fn(state, scope, proto)
        except GatewayError as err:
            send_mj_error(proto, err)
        except Exception:
            log.exception("unhandled error on %s %s", scope.method, scope.path)
            send_mj_error(proto, GatewayError("internal error in the gateway; see its log"))
        else:
            return
        await discard_body(scope, proto)  # answered early: drop the body the client may still send

    return handle


def mj_key(state: WorkerState, snap: Snapshot, scope: Any, x: Exchange | None = None) -> KeyRuntime:
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


async def call_upstream(
    state: WorkerState,
    provider: ProviderRuntime,
    method: str,
    endpoint: str,
    body: bytes | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    x: Exchange | None = None,
) -> tuple[int, bytes]:
    """One request to a midjourney-proxy; a key it refuses (401/403) is benched and the
    provider's next key is tried, each delivery counted in `x.attempts` within max_attempts.
    The answer comes back with every configured secret masked (a proxy may echo its own)."""
    snap = state.store.current
    ring = state.keyring(provider)
    adapter = adapter_for(provider.kind)
    for api_key in ring.rotation():
        if x is not None:
            if x.attempts >= snap.settings.routing.max_attempts:
                raise Unreachable(provider.id, f"stopped after {x.attempts} attempt(s) (max_attempts)")
            x.attempts += 1
        call = UpstreamCall(
            provider=provider, endpoint=endpoint, method=method, model="", body=body or b"",
            content_type=JSON, stream=False, api_key=api_key, headers=headers,
        )  # fmt: skip
        try:
            response = await adapter.send(call, state.client)
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
            ring.bench(api_key)
            continue
        return response.status, snap.redactor.data(data)
    raise Unreachable(provider.id, "every api key of this provider was refused")


def scrub(data: bytes, provider: ProviderRuntime) -> str:
    """A short reason from an upstream body, without the provider's keys in it."""
    text = data[:500].decode("utf-8", "replace")
    for secret in provider.api_keys:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
