"""One request's record as it goes through the gateway; it becomes the usage row at the end."""

from __future__ import annotations

import itertools
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ..billing.pricing import compute_cost
from ..config.snapshot import KeyRuntime, Snapshot
from ..core.usage import TokenUsage
from ..errors import GatewayError
from ..usage.record import UsageRecord

# Unique ids without a random syscall per request: a random per-process prefix and a counter,
# renewed after a fork (granian may fork its workers).
_id_prefix = ""
_id_counter = itertools.count(1)


def _renew_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = "req_" + secrets.token_hex(6), itertools.count(1)


_renew_ids()
os.register_at_fork(after_in_child=_renew_ids)  # no getpid() syscall per request


def new_request_id() -> str:
    return f"{_id_prefix}{next(_id_counter):012x}"


@dataclass(slots=True)
class Exchange:
    endpoint: str
    request_id: str = field(default_factory=new_request_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.perf_counter)
    key: KeyRuntime | None = None
    requested_model: str | None = None
    served_model: str | None = None
    provider: str | None = None
    attempts: int = 0
    status: int = 0
    error_type: str | None = None
    stream: bool = False
    cancelled: bool = False
    usage: TokenUsage | None = None
    ttft_ms: float | None = None
    tags: tuple[str, ...] = ()
    body_bytes: int = 0
    relayed_chars: int = 0
    action_cost: Decimal | None = None  # billed per action (Midjourney), not per token
    task_id: str | None = None  # the asynchronous task a submit created (gateway/tasks/)
    affinity_key: str | None = None  # hashed affinity value (routing/affinity.py)

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(
        self, endpoint: str, request_id: str | None = None, started_at: datetime | None = None,
        t0: float | None = None, key: KeyRuntime | None = None, requested_model: str | None = None,
        served_model: str | None = None, provider: str | None = None, attempts: int = 0,
        status: int = 0, error_type: str | None = None, stream: bool = False, cancelled: bool = False,
        usage: TokenUsage | None = None, ttft_ms: float | None = None, tags: tuple[str, ...] = (),
        body_bytes: int = 0, relayed_chars: int = 0, action_cost: Decimal | None = None,
        task_id: str | None = None, affinity_key: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.request_id = request_id if request_id is not None else new_request_id()
        self.started_at = started_at if started_at is not None else datetime.now(UTC)
        self.t0 = t0 if t0 is not None else time.perf_counter()
        self.key = key
        self.requested_model = requested_model
        self.served_model = served_model
        self.provider = provider
        self.attempts = attempts
        self.status = status
        self.error_type = error_type
        self.stream = stream
        self.cancelled = cancelled
        self.usage = usage
        self.ttft_ms = ttft_ms
        self.tags = tags
        self.body_bytes = body_bytes
        self.relayed_chars = relayed_chars
        self.action_cost = action_cost
        self.task_id = task_id
        self.affinity_key = affinity_key

    def fail(self, err: GatewayError) -> None:
        self.status = err.status
        self.error_type = err.code or err.type
        self.cancelled = self.cancelled or err.status == 499  # the client went away (e.g. mid-upload)

    def elapsed(self) -> float:
        """Seconds since the request arrived."""
        return time.perf_counter() - self.t0

    def mark_first_byte(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000

    def final_usage(self) -> TokenUsage:
        """Upstream usage when reported; otherwise an estimate from what was relayed, so that a
        cut stream is billed for what the client received (~4 characters per token)."""
        if self.usage is not None:
            return self.usage
        if self.provider is None or (self.status >= 400 and not self.relayed_chars):
            return TokenUsage(source="none")
        return TokenUsage(
            prompt_tokens=math.ceil(self.body_bytes / 4),
            completion_tokens=math.ceil(self.relayed_chars / 4),
            source="estimated",
        )

    def to_record(self, snapshot: Snapshot) -> UsageRecord:
        elapsed = time.perf_counter() - self.t0
        usage = self.final_usage()
        cost, source = None, usage.source
        if self.action_cost is not None:
            cost, source = self.action_cost, "upstream"
        elif usage.source != "none" and self.provider and self.served_model:
            price = snapshot.price_for(self.provider, self.served_model)
            cost = compute_cost(price, usage, self.multiplier())
        key = self.key
        return UsageRecord(
            request_id=self.request_id,
            started_at=self.started_at,
            finished_at=self.started_at + timedelta(seconds=elapsed),
            key_id=key.id if key else None,
            group=key.group.id if key and key.group else None,
            tags=list(self.tags),
            endpoint=self.endpoint,
            requested_model=self.requested_model,
            served_model=self.served_model,
            provider=self.provider,
            attempts=self.attempts,
            status=self.status,
            error_type=self.error_type,
            stream=self.stream,
            cancelled=self.cancelled,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            images=usage.images,
            audio_seconds=usage.audio_seconds,
            cost_usd=cost,
            usage_source=source,
            latency_ms=round(elapsed * 1000, 3),
            ttft_ms=round(self.ttft_ms, 3) if self.ttft_ms is not None else None,
            policy_revision=snapshot.revision,
            task_id=self.task_id,
            affinity_key=self.affinity_key,
        )

    def multiplier(self) -> float:
        key = self.key
        if key is None:
            return 1.0
        group = key.group.price_multiplier if key.group else 1.0
        return key.price_multiplier * group
