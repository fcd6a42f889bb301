"""Midjourney end to end: HTTP client -> real `tollgate serve` (2 workers) -> two fake
midjourney-proxy servers on loopback. Billing rows are checked in test_midjourney_billing.py
(in-process, recorder stub) and here through the usage ledger once it is available."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.midjourney_proxy import FakeMidjourneyProxy
from tests.gateway_process import GatewayProcess
from tests.mj_support import ALICE_MULTIPLIER, MJ_ADMIN, MJ_KEYS, PRICES, start_proxies, write_mj_bundle

Proxies = tuple[FakeMidjourneyProxy, FakeMidjourneyProxy]
ALICE, BOB = MJ_KEYS["alice"], MJ_KEYS["bob"]
FAST_POLL = {"TOLLGATE_MJ_POLL_S": "0.2"}


@pytest.fixture(scope="module")
def proxies() -> Iterator[Proxies]:
    a, b = start_proxies()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def gw(proxies: Proxies, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("mj")
    write_mj_bundle(root / "policies", *proxies)
    with GatewayProcess(root / "policies", root / "data", workers=2, env=FAST_POLL) as gateway:
        yield gateway


@pytest.fixture()
def fresh(proxies: Proxies) -> Proxies:
    for p in proxies:
        p.reset()
    return proxies


def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


def post(gw: GatewayProcess, path: str, doc: Any, key: str | None = ALICE, header: str = "bearer") -> httpx.Response:
    headers = {}
    if key:
        headers = {"authorization": f"Bearer {key}"} if header == "bearer" else {"mj-api-secret": key}
    return httpx.post(f"{gw.url}{path}", json=doc, headers=headers, timeout=10)


def fetch(gw: GatewayProcess, task_id: str, key: str = ALICE, prefix: str = "") -> httpx.Response:
    return httpx.get(f"{gw.url}{prefix}/mj/task/{task_id}/fetch", headers={"mj-api-secret": key}, timeout=10)


def imagine(gw: GatewayProcess, prompt: str = "a red fox", key: str = ALICE, prefix: str = "") -> str:
    r = post(gw, f"{prefix}/mj/submit/imagine", {"prompt": prompt}, key)
    assert r.status_code == 200, r.text
    assert r.json()["code"] == 1 and r.json()["properties"]["discordInstanceId"] in ("a", "b")
    return str(r.json()["result"])


def finished(gw: GatewayProcess, task_id: str, key: str = ALICE) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = fetch(gw, task_id, key).json()
        return doc if doc["status"] in ("SUCCESS", "FAILURE") else None

    return until(done)  # type: ignore[no-any-return]


def owner(proxies: Proxies, task_id: str) -> FakeMidjourneyProxy:
    return next(p for p in proxies if task_id in p.tasks)


def test_imagine_goes_upstream_with_the_providers_secret_and_polls_to_success(gw, fresh: Proxies):
    r = post(gw, "/mj/submit/imagine", {"prompt": "a red fox", "notifyHook": "http://evil.example/"})
    assert r.status_code == 200 and r.headers["x-request-id"].startswith("req_")
    task_id = r.json()["result"]
    proxy = owner(fresh, task_id)
    sent = proxy.submits("imagine")[-1]
    assert sent.secret == f"mj-secret-{proxy.name}" and sent.mode is None
    assert ALICE not in str(sent.headers) and "notifyHook" not in sent.json()
    assert r.headers["x-tollgate-provider"] == f"mj-{proxy.name}"
    first = fetch(gw, task_id).json()
    assert first["id"] == task_id and first["status"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS")
    doc = finished(gw, task_id)
    assert (doc["status"], doc["progress"], doc["action"]) == ("SUCCESS", "100%", "IMAGINE")
    assert doc["imageUrl"].endswith(f"{task_id}.png") and len(doc["buttons"]) == 9
    assert doc["buttons"][0]["customId"].startswith("MJ::JOB::upsample::1::")


def test_upscale_goes_back_to_the_upstream_that_ran_the_task(gw, fresh: Proxies):
    tasks: list[str] = []

    def both_upstreams_used() -> bool:
        tasks.append(imagine(gw))
        return all(any(t in p.tasks for t in tasks) for p in fresh)

    until(both_upstreams_used)
    for task_id in [next(t for t in tasks if t in p.tasks) for p in fresh]:  # one task on each
        grid = finished(gw, task_id)
        u1 = next(b["customId"] for b in grid["buttons"] if b["label"] == "U1")
        r = post(gw, "/mj/submit/action", {"taskId": task_id, "customId": u1}, header="mj-api-secret")
        assert r.status_code == 200 and r.json()["code"] == 1, r.text
        origin = owner(fresh, task_id)
        other = next(p for p in fresh if p is not origin)
        assert origin.submits("action")[-1].json() == {"taskId": task_id, "customId": u1}
        assert not any(s.json().get("taskId") == task_id for s in other.submits("action"))
        upscaled = finished(gw, r.json()["result"])
        assert upscaled["action"] == "UPSCALE" and owner(fresh, upscaled["id"]) is origin


def test_change_and_simple_change_map_to_the_same_upstream(gw, fresh: Proxies):
    task_id = imagine(gw)
    finished(gw, task_id)
    origin = owner(fresh, task_id)
    r = post(gw, "/mj/submit/change", {"taskId": task_id, "action": "VARIATION", "index": 2})
    assert r.json()["code"] == 1 and origin.submits("change")[-1].json()["taskId"] == task_id
    r = post(gw, "/mj/submit/simple-change", {"content": f"{task_id} U3"})
    assert r.json()["code"] == 1 and origin.submits("simple-change")[-1].json() == {"content": f"{task_id} U3"}


def test_mode_prefixes_are_forwarded_as_mj_mode_paths(gw, fresh: Proxies):
    for prefix, mode in (("/fast", "fast"), ("/mj-relax", "relax"), ("/turbo", "turbo")):
        task_id = imagine(gw, prefix=prefix)
        sent = owner(fresh, task_id).submits("imagine")[-1]
        assert (sent.mode, sent.path) == (mode, "/mj/submit/imagine")
        r = fetch(gw, task_id, prefix=prefix)
        assert r.status_code == 200 and r.json()["id"] == task_id
    assert any(rec.mode == "turbo" and rec.path.endswith("/fetch") for p in fresh for rec in p.received)


def test_tasks_belong_to_the_key_that_submitted_them(gw, fresh: Proxies):
    task_id = imagine(gw)
    grid = finished(gw, task_id)
    mine = imagine(gw, key=BOB)
    r = fetch(gw, task_id, key=BOB)
    assert r.status_code == 404 and r.json()["code"] == 3 and r.json()["description"]
    u1 = grid["buttons"][0]["customId"]
    before = sum(len(p.submits("action")) for p in fresh)
    r = post(gw, "/mj/submit/action", {"taskId": task_id, "customId": u1}, key=BOB)
    assert r.status_code == 404 and r.json()["code"] == 3
    assert sum(len(p.submits("action")) for p in fresh) == before  # nothing reached an upstream
    assert post(gw, "/mj/submit/simple-change", {"content": f"{task_id} U1"}, key=BOB).status_code == 404
    r = httpx.get(f"{gw.url}/mj/task/{task_id}/image-seed", headers={"authorization": f"Bearer {BOB}"})
    assert r.status_code == 404
    listed = post(gw, "/mj/task/list-by-condition", {"ids": [task_id, mine]}, key=BOB).json()
    assert [t["id"] for t in listed] == [mine]
    listed = post(gw, "/mj/task/list-by-condition", {"ids": [task_id, mine]}).json()
    assert [t["id"] for t in listed] == [task_id]
    assert task_id not in [t["id"] for t in post(gw, "/mj/task/list-by-condition", {}, key=BOB).json()]


def test_image_seed_is_relayed_from_the_tasks_upstream(gw, fresh: Proxies):
    task_id = imagine(gw)
    finished(gw, task_id)
    r = httpx.get(f"{gw.url}/mj/task/{task_id}/image-seed", headers={"authorization": f"Bearer {ALICE}"})
    assert r.status_code == 200 and r.json() == {"code": 1, "description": "success", "result": "1234567"}
    # the task's own upstream got it, no other (the gateway's status polls may come after it)
    seed = f"/mj/task/{task_id}/image-seed"
    assert [p for p in fresh if any(rec.path == seed for rec in p.received)] == [owner(fresh, task_id)]


def test_errors_have_the_midjourney_proxy_shape(gw, fresh: Proxies):
    cases = [
        (post(gw, "/mj/submit/imagine", {"prompt": "x"}, key=None), 401, 4),
        (post(gw, "/mj/submit/imagine", {"prompt": "x"}, key="tg-wrong"), 401, 4),
        (post(gw, "/mj/submit/imagine", {"prompt": "x"}, key=MJ_KEYS["nomj"]), 403, 4),
        (post(gw, "/mj/submit/imagine", {"prompt": ""}), 400, 4),
        (post(gw, "/mj/submit/imagine", [1, 2]), 400, 4),
        (post(gw, "/mj/submit/blend", {"base64Array": ["only-one"]}), 400, 4),
        (post(gw, "/mj/submit/action", {"taskId": "1", "customId": "not-a-button"}), 400, 4),
        (post(gw, "/mj/submit/change", {"taskId": "1", "action": "UPSCALE", "index": 9}), 400, 4),
        (post(gw, "/mj/submit/action", {"taskId": "nope", "customId": "MJ::JOB::upsample::1::h"}), 404, 3),
        (fetch(gw, "does-not-exist"), 404, 3),
    ]
    for r, status, code in cases:
        assert r.status_code == status, r.text
        doc = r.json()
        assert doc["code"] == code and doc["description"] and doc["result"] is None, doc
    assert not any(p.submits() for p in fresh)
    for p in fresh:
        p.script_codes((24, "banned prompt"))
    r = post(gw, "/mj/submit/imagine", {"prompt": "banned words"})
    assert r.status_code == 200 and r.json()["code"] == 24  # the proxy's own refusal, relayed


def test_a_failed_task_reports_failure(gw, fresh: Proxies):
    task_id = imagine(gw, prompt="FAIL: forced")
    doc = finished(gw, task_id)
    assert doc["status"] == "FAILURE" and doc["failReason"]


def test_tasks_survive_a_restart_of_the_gateway(proxies: Proxies, tmp_path: Path):
    write_mj_bundle(tmp_path / "policies", *proxies)
    with GatewayProcess(tmp_path / "policies", tmp_path / "data", env={"TOLLGATE_MJ_POLL_S": "30"}) as gw1:
        task_id = imagine(gw1)
    origin = owner(proxies, task_id)
    assert origin.tasks[task_id].status == "SUBMITTED"  # nobody fetched it before the restart
    with GatewayProcess(tmp_path / "policies", tmp_path / "data", workers=2) as gw2:
        assert fetch(gw2, task_id, key=BOB).status_code == 404  # still alice's
        grid = finished(gw2, task_id)
        assert grid["id"] == task_id and grid["status"] == "SUCCESS"
        r = post(gw2, "/mj/submit/action", {"taskId": task_id, "customId": grid["buttons"][0]["customId"]})
        assert r.json()["code"] == 1 and origin.submits("action")[-1].json()["taskId"] == task_id


# --- END-TO-END BILLING THROUGH THE USAGE LEDGER ------------------------------------------------
# Skipped until the DuckDB ledger (gateway/usage/ledger.py, another engineer's issue) has landed;
# the same rows are asserted in-process today in test_midjourney_billing.py.
def _usage(gw: GatewayProcess, sql: str) -> list[dict[str, Any]] | None:
    r = httpx.post(f"{gw.url}/admin/usage/query", json={"sql": sql},
                   headers={"authorization": f"Bearer {MJ_ADMIN}"}, timeout=10)
    if r.status_code == 503:
        return None
    r.raise_for_status()
    doc = r.json()
    if isinstance(doc, dict) and "columns" in doc:
        return [dict(zip(doc["columns"], row, strict=True)) for row in doc.get("rows", [])]
    if isinstance(doc, dict) and "data" in doc:
        doc = doc["data"]
    return [dict(row) for row in doc]


def test_billing_and_refund_rows_in_the_usage_ledger(gw, fresh: Proxies):
    sql = ("SELECT request_id, key_id, endpoint, error_type, cost_usd FROM usage "
           "WHERE key_id = 'alice' AND endpoint = 'mj/submit/imagine'")
    before = _usage(gw, sql)
    assert before is not None, "the usage ledger must answer"
    seen = {r["request_id"] for r in before}  # the gateway is shared with earlier tests
    ok, bad = imagine(gw), imagine(gw, prompt="FAIL: refund me")
    finished(gw, ok)
    finished(gw, bad)

    def rows() -> list[dict[str, Any]] | None:
        found = [r for r in _usage(gw, sql) or [] if r["request_id"] not in seen]
        charges = [r for r in found if r["error_type"] is None]
        mine = {f"{r['request_id']}-refund" for r in charges}  # refunds of this test's charges
        refunds = [r for r in found if r["error_type"] == "mj_refund" and r["request_id"] in mine]
        # rows from two workers' spools arrive independently: wait for both charges and the refund
        return [*charges, *refunds] if refunds and len(charges) >= 2 else None

    found = until(rows)
    charges = [Decimal(str(r["cost_usd"])) for r in found if r["error_type"] is None]
    refunds = [r for r in found if r["error_type"] == "mj_refund"]
    assert len(charges) == 2
    assert Decimal(PRICES["mj_imagine"]) * ALICE_MULTIPLIER in charges
    assert len(refunds) == 1 and Decimal(str(refunds[0]["cost_usd"])) < 0
    assert str(refunds[0]["request_id"]).endswith("-refund")
