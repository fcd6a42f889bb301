"""Suno in New API's dialect end to end: HTTP client -> a real `tollgate serve` -> a fake
suno-api upstream on loopback; per-action charges and refunds read back from the DuckDB ledger."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.gateway_process import GatewayProcess
from tests.tasks_support import (
    FAST_POLL,
    KEYS,
    Upstreams,
    charges,
    start_upstreams,
    stop_upstreams,
    task_rows,
    until,
    write_bundle,
)


@pytest.fixture(scope="module")
def ups() -> Iterator[Upstreams]:
    started = start_upstreams()
    yield started
    stop_upstreams(started)


@pytest.fixture(scope="module")
def gw(ups: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("suno")
    with GatewayProcess(write_bundle(root, ups), root / "data", env=FAST_POLL) as gateway:
        yield gateway


def call(gw: GatewayProcess, method: str, path: str, doc: Any = None, who: str = "alice", **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEYS[who]}"}
    return httpx.request(method, f"{gw.url}{path}", json=doc, headers=headers, timeout=10, **kw)


def submit(gw: GatewayProcess, action: str, doc: dict[str, Any], who: str = "alice") -> str:
    r = call(gw, "POST", f"/suno/submit/{action}", doc, who)
    assert r.status_code == 200 and r.json()["code"] == "success", r.text
    return str(r.json()["data"])


def finished(gw: GatewayProcess, task_id: str, who: str = "alice") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task = call(gw, "GET", f"/suno/fetch/{task_id}", who=who).json()["data"]
        return task if task["status"] in ("SUCCESS", "FAILURE") else None

    return until(done)  # type: ignore[no-any-return]


def test_music_submit_poll_success_is_billed_per_action(gw: GatewayProcess, ups: Upstreams) -> None:
    task_id = submit(gw, "music", {"prompt": "[Verse] city lights", "mv": "chirp-v4", "tags": "punk"})
    assert ups[3].submits[-1]["tags"] == "punk"  # forwarded as sent
    task = finished(gw, task_id)
    assert task["status"] == "SUCCESS" and task["task_id"] == task_id and task["data"][0]["audio_url"]
    charge, end = task_rows(gw, task_id, 2)
    assert Decimal(str(charge["cost_usd"])) == Decimal("0.10") * 2  # alice's multiplier
    assert (charge["endpoint"], end["error_type"]) == ("suno/submit/music", "task_succeeded")
    lyrics = submit(gw, "lyrics", {"prompt": "a song about rain"})
    both = call(gw, "POST", "/suno/fetch", {"ids": [task_id, lyrics, "nope"]}).json()
    assert both["code"] == "success" and [t["task_id"] for t in both["data"]] == [task_id, lyrics]
    assert [Decimal(str(r["cost_usd"])) for r in charges(gw, lyrics)] == [Decimal("0.02") * 2]


def test_failed_task_is_refunded_once(gw: GatewayProcess) -> None:
    task_id = submit(gw, "music", {"gpt_description_prompt": "FAIL: a refused song"})
    for _ in range(3):
        assert finished(gw, task_id)["status"] == "FAILURE"
    rows = task_rows(gw, task_id, 3)
    refunds = [r for r in rows if r["error_type"] == "suno_refund"]
    assert len(refunds) == 1 and Decimal(str(refunds[0]["cost_usd"])) == -Decimal("0.20")


def test_another_key_gets_404_in_new_apis_shape(gw: GatewayProcess) -> None:
    task_id = submit(gw, "lyrics", {"prompt": "mine"})
    r = call(gw, "GET", f"/suno/fetch/{task_id}", who="bob")
    assert r.status_code == 404 and r.json() == {"code": "task_not_exist", "message": f"task {task_id} not found",
                                                 "data": None}
    assert call(gw, "POST", "/suno/fetch", {"ids": [task_id]}, who="bob").json()["data"] == []
    assert call(gw, "GET", "/suno/fetch/never-made").status_code == 404


def test_malformed_submits_and_duplicate_ids(gw: GatewayProcess, ups: Upstreams) -> None:
    for path, kw in (("/suno/submit/music", {"content": b""}), ("/suno/submit/music", {"json": {"tags": "x"}}),
                     ("/suno/submit/lyrics", {"content": b"[1,"}), ("/suno/fetch", {"json": {"ids": []}})):
        r = httpx.post(f"{gw.url}{path}", headers={"authorization": f"Bearer {KEYS['alice']}"}, timeout=10, **kw)
        assert r.status_code == 400 and r.json()["data"] is None and r.json()["message"], r.text
        assert "Traceback" not in r.text
    first = submit(gw, "lyrics", {"prompt": "one"})
    ups[3].duplicate_id = first
    try:
        r = call(gw, "POST", "/suno/submit/lyrics", {"prompt": "two"})
    finally:
        ups[3].duplicate_id = None
    assert r.status_code == 502 and r.json()["code"] == "upstream_duplicate_task"
    assert len(charges(gw, first)) == 1
