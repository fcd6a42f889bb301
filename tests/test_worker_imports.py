"""What each long-lived process loads at start, so that idle memory stays small (issue 14):
a worker imports the request path and nothing that only a feature in use needs (DuckDB, the
upstream libraries of other transports, websockets, Jinja2, the cloud SDKs, pydantic-settings);
the supervisor only the standard library and granian."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""
# Loaded on first use only: by the ledger owner, another --transport, a Realtime session, the
# console's pages, a media task (SQLite), a Bedrock or Vertex provider, the Redis store, the
# serve command's settings check.
WORKER_MUST_NOT_LOAD = ("duckdb", "aiohttp", "httpx", "websockets", "jinja2", "botocore", "google.auth", "pydantic",
                        "redis", "pydantic_settings", "rich", "requests", "sqlite3", "gateway.console")


def loaded(module: str, env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120, env={**os.environ, **(env or {})})
    return set(json.loads(done.stdout))


def test_a_worker_loads_only_the_request_path() -> None:
    modules = loaded("gateway.server.app")
    assert not {m for m in modules
                if m.split(".")[0] in WORKER_MUST_NOT_LOAD or ".".join(m.split(".")[:2]) in WORKER_MUST_NOT_LOAD}


def test_the_supervisor_loads_the_standard_library_and_granian() -> None:
    modules = loaded("gateway.serve.run")
    assert {m for m in modules if m.startswith("gateway.")} <= {"gateway.serve", "gateway.serve.run",
                                                                "gateway.usage", "gateway.usage.lock",
                                                                "gateway.compiled"}
    assert not {"pydantic", "msgspec", "celpy", "lark", "duckdb", "watchfiles"} & {m.split(".")[0] for m in modules}


def test_the_workers_settings_mirror_the_checked_fields() -> None:
    """worker_settings.py names every field of settings_fields.py with the same type."""
    import typing

    from gateway.settings import ServeSettings
    from gateway.settings_fields import SettingsFields
    from gateway.worker_settings import WorkerSettings, from_json

    declared = {name: field.annotation for name, field in SettingsFields.model_fields.items()}
    assert typing.get_type_hints(WorkerSettings) == declared
    settings = ServeSettings(port=9999, usage_parquet_dir="/tmp/x", node_id="n1")
    assert from_json(settings.model_dump_json()) == WorkerSettings(**dict(settings))
