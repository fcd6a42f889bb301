"""The settings as a worker holds them: the values `tollgate serve` checked (settings.py,
pydantic-settings) and handed down as one JSON document, decoded with msgspec.

Why a second declaration of the fields: a worker that imported pydantic to read them would carry
it for its whole life (~5 MB of each worker's ~60, pydantic-settings ~8 MB more;
benchmarks/README.md). The fields, their defaults, checks and comments are declared once, in
settings_fields.py; this mirror only names them with their types (every value comes from there),
and tests/test_worker_imports.py fails when the two differ."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

SETTINGS_JSON_ENV = "TOLLGATE_SETTINGS_JSON"  # the checked settings, from `tollgate serve` to its workers
CONFIG_ENV = "TOLLGATE_CONFIG"  # path of an optional settings file (TOML)
ENV_FILE_ENV = "TOLLGATE_ENV_FILE"  # the `env_file` setting, as workers and the bundle loader read it


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str
    port: int
    workers: int
    policies: Path
    data_dir: Path
    log_level: Literal["debug", "info", "warning", "error"]
    transport: Literal["h1", "aiohttp", "httpx-aiohttp", "httpx"]
    pool_size: int
    shutdown_grace_s: float
    server: Literal["native", "granian"]
    max_connections: int
    header_timeout_s: float
    keep_alive: bool
    batch_threads: bool
    backlog: int
    max_header_bytes: int
    body_timeout_s: float
    realtime_max_frame_bytes: int
    reload_debounce_ms: int
    ledger: bool
    ledger_interval_s: float
    ledger_idle_release_s: float
    trust_forwarded: bool
    state_store: Literal["memory", "redis"]
    redis_url: str
    redis_prefix: str
    redis_cluster: bool
    redis_timeout_s: float
    redis_failure: Literal["closed", "open"]
    mj_poll_s: float
    node_id: str
    usage_parquet_dir: Path | None
    usage_parquet_interval_s: float
    env_file: Path | None
    console_enabled: bool
    console_session_hours: float


def _path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"{kind} in the worker settings")


def from_json(document: str | bytes) -> WorkerSettings:
    return msgspec.json.decode(document, type=WorkerSettings, dec_hook=_path)


class Dumps(Protocol):
    """`ServeSettings` (pydantic), as tests and embedders pass it."""

    def model_dump_json(self) -> str: ...


def as_worker_settings(settings: WorkerSettings | Dumps) -> WorkerSettings:
    return settings if isinstance(settings, WorkerSettings) else from_json(settings.model_dump_json())


def checked_settings() -> WorkerSettings | None:
    """The settings `tollgate serve` checked and handed down, if this process was started by it."""
    checked = os.environ.get(SETTINGS_JSON_ENV)
    return from_json(checked) if checked else None
