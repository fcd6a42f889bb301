"""What every task family's submit shares after its own parsing and pricing: forwarding to the
first candidate that takes it (the attempt engine: key rotation, breakers, fallbacks), and
storing the new task with its charge. A submit that may have reached an upstream (a timeout
after the request was written) is never retried elsewhere: the task may exist there."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from decimal import Decimal

from ..config.snapshot import KeyRuntime, ProviderRuntime, RouteTarget, Snapshot
from ..errors import GatewayError, UpstreamError
from ..tasks.engine import TaskEngine
from ..tasks.store import TaskRow
from .attempts import AttemptFailed, Attempts, Exhausted, Send
from .exchange import Exchange
from .state import WorkerState
from .task_upstream import call_once, snippet

# (path, body, content type) of the submit to one candidate
MakeCall = Callable[[ProviderRuntime, RouteTarget], tuple[str, bytes, str]]
Forwarded = tuple[ProviderRuntime, RouteTarget, int, bytes]


async def forward_first(
    state: WorkerState, snap: Snapshot, x: Exchange, targets: Iterable[RouteTarget], make: MakeCall,
    headers: tuple[tuple[str, str], ...], what: str,
) -> Forwarded:  # fmt: skip
    """The first candidate's answer that is not a retryable failure: (provider, target, status,
    body). A connection refused or a retryable HTTP status moves on; a timeout does not."""

    def for_target(provider: ProviderRuntime, target: RouteTarget) -> Send[Forwarded]:
        path, body, content_type = make(provider, target)

        async def send(api_key: str) -> Forwarded:
            try:
                status, data = await call_once(
                    state, provider, api_key, "POST", path, body, content_type, headers
                )
            except AttemptFailed as exc:
                if exc.maybe_sent:
                    exc.final = UpstreamError(
                        f"provider {provider.id}: {exc.detail}; the {what} may have been submitted",
                        status=exc.status,
                        code="upstream_timeout",
                    )
                raise
            if status in snap.settings.routing.retry_on:
                raise AttemptFailed(provider.id, f"HTTP {status}: {snippet(data)}", status)
            return provider, target, status, data

        return send

    try:
        return await Attempts(state, snap, x).first(targets, for_target)
    except Exhausted as none:
        raise none.error(x, f"no {what} upstream is available right now") from None


def new_row(
    snap: Snapshot, x: Exchange, key: KeyRuntime, family: str, provider: ProviderRuntime, target: RouteTarget,
    task_id: str, upstream_id: str, action: str, cost: Decimal | None, status: str, doc: bytes,
) -> TaskRow:  # fmt: skip
    return TaskRow(
        id=task_id, provider=provider.id, upstream_id=upstream_id, key_id=key.id,
        group=key.group.id if key.group else None, model=target.model,
        requested_model=x.requested_model or target.model, action=action, mode=None,
        endpoint=x.endpoint, request_id=x.request_id, cost=cost, tags=x.tags, revision=snap.revision,
        status=status, doc=doc, submitted_at=time.time(), family=family,
    )  # fmt: skip


async def store_charged(tasks: TaskEngine, x: Exchange, row: TaskRow) -> TaskRow:
    """Store the new task and charge this submit for it. An upstream that names a task it
    already gave (to this key or another) is refused: never two charges for one task."""
    try:
        stored = await tasks.add(row)
    except Exception as exc:
        raise GatewayError(
            f"the upstream accepted task {row.upstream_id[:100]} but the gateway could not store it ({exc})"
        ) from None
    if stored.request_id != x.request_id:
        raise UpstreamError(
            f"upstream {row.provider} answered with the id of an existing task; this request was not "
            "charged (try again)",
            code="upstream_duplicate_task",
        )
    x.task_id, x.action_cost = stored.id, row.cost
    return stored
