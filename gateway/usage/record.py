"""The usage row: one per request (served, denied, failed or cancelled), as the ledger stores it.

Its token columns follow the convention of `TokenUsage` (gateway/core/usage.py).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec


class UsageRecord(msgspec.Struct, kw_only=True):
    request_id: str
    started_at: datetime
    finished_at: datetime
    key_id: str | None = None
    group: str | None = None
    tags: list[str] = []
    endpoint: str = ""
    requested_model: str | None = None
    served_model: str | None = None
    provider: str | None = None
    attempts: int = 0
    status: int = 0
    error_type: str | None = None
    stream: bool = False
    cancelled: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    audio_seconds: float = 0.0
    cost_usd: Decimal | None = None
    usage_source: str = "none"  # upstream | estimated | none
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    policy_revision: str = ""
    task_id: str | None = None  # asynchronous tasks: the submit, refund and end rows of one task
    affinity_key: str | None = None  # a hash of the alias's affinity value (routing/affinity.py)
    session_id: str | None = None  # a Realtime API session: one row per response in it
