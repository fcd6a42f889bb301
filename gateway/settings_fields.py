"""The process settings' fields and their checks, as a plain pydantic model.

`ServeSettings` (settings.py) adds where they come from (flags, `TOLLGATE_*` environment, a
settings file) with pydantic-settings. A worker needs neither: `tollgate serve` reads and checks
them once and hands them down as one JSON document in `TOLLGATE_SETTINGS_JSON`, which the worker
decodes with msgspec into `WorkerSettings` (worker_settings.py: the same fields, typed; a test
keeps the two alike)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SettingsFields(BaseModel):
    model_config = ConfigDict(extra="forbid")


    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = 1
    policies: Path = Path("policies")
    data_dir: Path = Path("data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Upstream HTTP client: aiohttp directly (fastest, measured), or httpx (MockTransport seam).
    transport: Literal["h1", "aiohttp", "httpx-aiohttp", "httpx"] = "h1"
    pool_size: int = 256
    shutdown_grace_s: float = 30.0
    # The HTTP server: Tollgate's own on the worker's event loop (gateway/h1server/: no thread
    # hop per request, ~70 µs less CPU per request at c=1), or granian's (RSGI on Rust threads).
    server: Literal["native", "granian"] = "native"
    # Client connections (each worker; see docs/architecture.md "Connection intake"). granian
    # holds one backpressure slot per open connection, idle or not, and stops accepting when they
    # are taken, so the slots must outnumber the connections a worker can be made to hold.
    max_connections: int = Field(default=16384, ge=16)
    # hyper's header timer runs from the moment a connection waits for a request head: on a new
    # connection, between keep-alive requests and under a slowloris trickle alike. It is therefore
    # also the keep-alive idle timeout: what frees the slots of connections that send nothing.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    keep_alive: bool = True
    # Linux: granian's runtime threads do not preempt a worker's Python thread (SCHED_BATCH;
    # gateway/server/threads.py): fewer context switches per request, +12-16% requests/s.
    batch_threads: bool = True
    backlog: int = Field(default=4096, ge=128)  # the kernel caps it at net.core.somaxconn
    # A request head still incomplete at this size is refused (431): hyper's read buffer, which
    # every connection may fill before any key is checked (granian's default, ~400 KiB, let 2,000
    # slow connections take 1 GB of a worker).
    max_header_bytes: int = Field(default=32768, ge=8192)
    # A request body must arrive within this (hyper's header timer stops at the head); read only
    # once the key is known, so it bounds what an authenticated slow sender can hold.
    body_timeout_s: float = Field(default=300.0, gt=0)
    # The largest Realtime API (WebSocket) message relayed either way; a larger one ends the
    # session (OpenAI's own cap on a client event is 15 MiB: an audio buffer append).
    realtime_max_frame_bytes: int = Field(default=16 << 20, ge=1024)
    reload_debounce_ms: int = 150
    ledger: bool = True
    # spool rotation period, and how often the owner looks for segments to ingest (it waits for
    # a batch of ~4 MB or 2 s, usage/owner.py; queries ingest first, so they see every row)
    ledger_interval_s: float = 0.5
    # The ledger owner lets DuckDB's memory go (~75 MB) after this long without rows to ingest or
    # queries to answer, and loads it again on the next one (~0.3 s, off the request path); 0: never.
    ledger_idle_release_s: float = Field(default=30.0, ge=0)
    # Trust X-Forwarded-For for the client address (behind a reverse proxy only).
    trust_forwarded: bool = False
    # Rate-limit / budget counters: per process ("memory"), or shared by workers and machines.
    state_store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tollgate:"
    # redis_url names one node of a Redis Cluster; the prefix becomes a hash tag ({tollgate}:).
    redis_cluster: bool = False
    redis_timeout_s: float = 0.5
    # Redis unreachable: "closed" refuses limited requests with 503, "open" admits them unlimited.
    redis_failure: Literal["closed", "open"] = "closed"
    # Seconds between background refreshes of unfinished Midjourney tasks (each worker).
    mj_poll_s: float = 5.0
    # This machine's name in the usage Parquet files (`node=<id>` directories); unique per machine.
    node_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    # Optional shared directory: the ledger owner also writes ingested usage there as Parquet
    # (`<dir>/node=<node_id>/date=<YYYY-MM-DD>/*.parquet`), at most one file a partition per interval.
    usage_parquet_dir: Path | None = None
    usage_parquet_interval_s: float = Field(default=60.0, ge=0)
    # Optional `NAME=value` file merged over the environment that `${VAR}` reads in the bundle;
    # read again on every reload, so a rotated provider key needs no restart.
    env_file: Path | None = None
    # The web console at /console/ (docs/console.md); false: those paths answer 404.
    console_enabled: bool = True
    # How long a console sign-in lasts (a signed, expiring cookie).
    console_session_hours: float = Field(default=8.0, gt=0, le=720)

    @field_validator("usage_parquet_dir", "env_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
