"""Building the limiter a worker uses from process settings, and the multi-worker start check."""

from __future__ import annotations

import logging

from ..config.snapshot import Snapshot
from ..worker_settings import WorkerSettings
from .credits import CreditSource
from .limiter import EnforcingLimiter, SpendSource
from .plan import declares_limits
from .store import MemoryStore, StateStore, StateUnavailable

log = logging.getLogger("tollgate.limits")


async def make_limiter(settings: WorkerSettings, spend_source: SpendSource | None = None,
                       credit_source: CreditSource | None = None) -> EnforcingLimiter:
    store: StateStore
    if settings.state_store == "redis":
        from .redis_store import RedisStore

        redis = RedisStore(settings.redis_url, settings.redis_prefix, settings.redis_timeout_s,
                           cluster=settings.redis_cluster)
        try:
            await redis.ping()
        except StateUnavailable as exc:  # not fatal: Redis may come up after the gateway
            log.error("limit state store unreachable at start (%s); requests with limits get 503 "
                      "until it is back (redis_failure = %s)", exc, settings.redis_failure)
        store = redis
    else:
        store = MemoryStore()
    return EnforcingLimiter(store, spend_source, fail_open=settings.redis_failure == "open",
                            credit_source=credit_source)


def workers_problem(settings: WorkerSettings, snapshot: Snapshot) -> str | None:
    """Several workers with per-process counters would multiply every limit: refuse to start."""
    if settings.workers <= 1 or settings.state_store != "memory" or not declares_limits(snapshot):
        return None
    return (
        f"cannot start: {settings.workers} workers with state_store = \"memory\" would give each worker "
        "its own counters, multiplying every rate limit, concurrency limit and budget the bundle "
        "declares.\nSet state_store = \"redis\" and redis_url (flags --state-store redis --redis-url "
        "redis://HOST:6379/0, or TOLLGATE_STATE_STORE / TOLLGATE_REDIS_URL), or run --workers 1."
    )


def redis_url_problem(settings: WorkerSettings) -> str | None:
    """A redis_url the client cannot use fails every worker at start: say so once, plainly."""
    if settings.state_store != "redis":
        return None
    from redis.connection import parse_url

    from .redis_store import redact

    try:
        parsed = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"cannot start: redis_url {redact(settings.redis_url)}: {exc}"
    if settings.redis_cluster and int(parsed.get("db") or 0) != 0:
        return (f"cannot start: redis_url {redact(settings.redis_url)} names database {parsed['db']}, "
                "but Redis Cluster has only database 0 (redis_cluster = true)")
    return None
