"""Client connection limits handed to granian: its backpressure, header timeout, keep-alive and
listen backlog, and the file descriptors they need (see docs/architecture.md, "Connection intake").

granian (2.8) takes one backpressure slot per accepted connection and gives it back only when the
connection closes; with every slot taken it stops accepting, so idle or slowloris connections can
starve real requests. The slots must therefore outnumber what a worker may be made to hold, the
header timeout bounds how long a connection that sends no complete request head keeps one, and
each slot needs a file descriptor. A worker out of descriptors fails every accept() with EMFILE
(granian logs each one and retries) and cannot open upstream connections or files either, so the
slots are kept under the descriptor limit, with room for the rest.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

from ..settings import ServeSettings

# descriptors a worker needs besides client connections: the upstream pool (pool_size), the
# ledger spool, the Midjourney task store, Redis, logs, the event loop's own
SPARE_FDS = 256


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    max_connections: int  # per worker, after the file descriptor limit
    fd_limit: int  # the soft RLIMIT_NOFILE the workers inherit
    warning: str | None = None


def plan_connections(settings: ServeSettings) -> ConnectionPlan:
    """Raise the soft descriptor limit as far as the connections need (workers inherit it) and
    lower `max_connections` when even the hard limit cannot hold them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserve = SPARE_FDS + settings.pool_size
    wanted = settings.max_connections + reserve
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if ceiling > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    if settings.max_connections + reserve <= soft:
        return ConnectionPlan(settings.max_connections, soft)
    allowed = max(16, soft - reserve)
    warning = (
        f"tollgate: max_connections {settings.max_connections} needs {wanted} file descriptors per "
        f"worker but the limit is {soft} (ulimit -n); serving at most {allowed} connections per worker"
    )
    return ConnectionPlan(allowed, soft, warning)


def granian_options(settings: ServeSettings, plan: ConnectionPlan) -> dict[str, Any]:
    """The keyword arguments of `Granian(...)` for client connections."""
    from granian.http import HTTP1Settings

    return {
        "backlog": settings.backlog,
        "backpressure": plan.max_connections,
        "http1_settings": HTTP1Settings(
            header_read_timeout=max(1, round(settings.header_timeout_s * 1000)),
            keep_alive=settings.keep_alive,
            max_buffer_size=settings.max_header_bytes,
        ),
    }
