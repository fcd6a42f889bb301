"""Shared by the task tests (videos, Suno, restarts): the bundle with fake OpenAI, Azure, Gemini
and Suno upstreams, client keys, and polling helpers over the gateway and its usage ledger."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.conftest import key_hash
from tests.fakes.suno_upstream import FakeSuno
from tests.fakes.video_upstream import FakeVideoUpstream
from tests.gateway_process import GatewayProcess

Upstreams = tuple[FakeVideoUpstream, FakeVideoUpstream, FakeVideoUpstream, FakeSuno]

KEYS = {"alice": "tg-video-alice", "bob": "tg-video-bob", "poor": "tg-video-poor"}
ADMIN = "tg-video-admin"
FAST_POLL = {"TOLLGATE_MJ_POLL_S": "0.2"}
BUNDLE = """
schema = 1

[settings]
pricing = "strict"

[[provider]]
id = "oa"
kind = "openai"
base_url = "{oa}"
api_keys = ["sk-video-upstream"]
models = ["sora-2"]
timeouts = {{ connect = 2, read = 5, total = 10 }}

[[provider]]
id = "az"
kind = "azure"
base_url = "{az}"
api_keys = ["az-video-key"]
models = ["sora-az"]
deployments = {{ "sora-az" = "my-sora-deployment" }}
timeouts = {{ connect = 2, read = 5, total = 10 }}

[[provider]]
id = "gem"
kind = "gemini"
base_url = "{gem}"
api_keys = ["gem-video-key"]
models = ["veo-3"]
timeouts = {{ connect = 2, read = 5, total = 10 }}

[price."sora-2"]
per_second = 0.10
per_second_by_size = {{ "1280x720" = 0.30 }}

[price."sora-az"]
per_second = 0.20

[price."veo-3"]
per_second = 0.40

[[provider]]
id = "suno-a"
kind = "suno"
base_url = "{suno}"
api_keys = ["suno-upstream-key"]
models = ["suno"]
timeouts = {{ connect = 2, read = 5, total = 10 }}

[price.suno]
per_action = {{ suno_music = 0.10, suno_lyrics = 0.02 }}

[[key]]
id = "alice"
hash = "{alice}"
price_multiplier = 2.0

[[key]]
id = "bob"
hash = "{bob}"

[[key]]
id = "poor"
hash = "{poor}"
budget = {{ usd = 1.0, period = "month" }}

[[admin_key]]
id = "root"
hash = "{admin}"
"""


def write_bundle(root: Path, ups: Upstreams) -> Path:
    oa, az, gem, suno = ups
    policies = root / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "bundle.toml").write_text(BUNDLE.format(
        oa=oa.base_url, az=az.base_url, gem=gem.base_url, suno=suno.base_url, admin=key_hash(ADMIN),
        **{k: key_hash(v) for k, v in KEYS.items()}))
    return policies


def start_upstreams() -> Upstreams:
    return (FakeVideoUpstream("openai").start(), FakeVideoUpstream("azure", "az-video-key").start(),
            FakeVideoUpstream("gemini", "gem-video-key").start(), FakeSuno().start())


def stop_upstreams(ups: Upstreams) -> None:
    for upstream in ups:
        upstream.stop()



def client(gw: GatewayProcess, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEYS[who], max_retries=0, timeout=10)


def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


def finished(c: openai.OpenAI, video_id: str) -> Any:
    return until(lambda: (v := c.videos.retrieve(video_id)).status in ("completed", "failed") and v)


def ledger(gw: GatewayProcess, sql: str, want: int = 1) -> list[dict[str, Any]]:
    """Rows of a query on the usage ledger (admin API), polled until there are `want` of them."""

    def rows() -> list[dict[str, Any]]:
        r = httpx.post(f"{gw.url}/admin/usage/query", json={"sql": sql},
                       headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
        doc = r.json() if r.status_code == 200 else {"columns": [], "rows": []}
        return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]

    deadline = time.monotonic() + 15
    found = rows()
    while len(found) < want and time.monotonic() < deadline:
        time.sleep(0.05)
        found = rows()
    return found


def task_rows(gw: GatewayProcess, task_id: str, want: int) -> list[dict[str, Any]]:
    sql = (f"SELECT request_id, key_id, endpoint, error_type, cost_usd, served_model, provider, status FROM usage "
           f"WHERE task_id = '{task_id}' ORDER BY started_at")
    rows = ledger(gw, sql, want)
    assert len(rows) == want, rows
    assert all(row["status"] == 200 for row in rows), rows
    return rows


def charges(gw: GatewayProcess, task_id: str) -> list[dict[str, Any]]:
    """The task's charge rows (its submit: error_type NULL), whatever else its end left."""
    return ledger(gw, f"SELECT request_id, cost_usd FROM usage WHERE task_id = '{task_id}' AND error_type IS NULL")
