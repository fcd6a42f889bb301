"""Midjourney billing through the real App in-process (RSGI harness) with a recording ledger
stub: per-action prices times multipliers, refusals, and the exactly-once refund of failures.

(The same rows through `tollgate usage sql` are checked end to end in test_midjourney.py once
the DuckDB ledger is available.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.server.app import App
from gateway.settings import ServeSettings
from tests.fakes.midjourney_proxy import FakeMidjourneyProxy
from tests.mj_support import (
    ALICE_MULTIPLIER,
    MJ_KEYS,
    PRICES,
    ListRecorder,
    call,
    start_proxies,
    write_mj_bundle,
)

Proxies = tuple[FakeMidjourneyProxy, FakeMidjourneyProxy]
ALICE, BOB = MJ_KEYS["alice"], MJ_KEYS["bob"]


def price(action: str, multiplier: int = ALICE_MULTIPLIER) -> Decimal:
    return Decimal(PRICES[action]) * multiplier


@pytest.fixture(scope="module")
def proxies() -> Iterator[Proxies]:
    a, b = start_proxies()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture()
def world(proxies: Proxies, tmp_path: Path) -> tuple[Path, Proxies]:
    for p in proxies:
        p.reset()
    write_mj_bundle(tmp_path / "policies", *proxies)
    return tmp_path, proxies


@asynccontextmanager
async def gateway(root: Path, poll_s: float = 30.0) -> AsyncIterator[tuple[App, ListRecorder]]:
    recorder = ListRecorder()
    app = App()
    settings = ServeSettings(policies=root / "policies", data_dir=root / "data", ledger=False,
                             mj_poll_s=poll_s, log_level="warning")
    await app.start(settings, recorder=recorder)
    try:
        yield app, recorder
    finally:
        await app.stop()


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


async def imagine_done(app: App, key: str = ALICE, prompt: str = "a cat") -> dict[str, Any]:
    r = await call(app, "POST", "/mj/submit/imagine", key, {"prompt": prompt})
    assert r.status == 200 and r.json()["code"] == 1, r.sent
    return await imagine_poll(app, r.json()["result"], key)


def button(doc: dict[str, Any], fragment: str) -> str:
    return next(b["customId"] for b in doc["buttons"] if fragment in b["customId"])


def test_submits_are_billed_per_action_times_key_and_group_multipliers(world):
    root, _ = world

    async def run() -> None:
        async with gateway(root) as (app, rec):
            r = await call(app, "POST", "/fast/mj/submit/imagine", ALICE, {"prompt": "a cat"})
            row = rec.by_request(r.header("x-request-id"))[0]
            assert row.cost_usd == price("mj_imagine") and isinstance(row.cost_usd, Decimal)
            assert (row.key_id, row.group, row.endpoint, row.status) == ("alice", "pro", "mj/submit/imagine", 200)
            assert row.provider == r.header("x-tollgate-provider") and row.served_model == "midjourney"
            assert row.tags == ["team-art", "mode:fast"] and row.error_type is None
            r = await call(app, "POST", "/mj/submit/describe", BOB, {"base64": "data:image/png;base64,AAAA"})
            assert rec.by_request(r.header("x-request-id"))[0].cost_usd == price("mj_describe", 1)
            r = await call(app, "POST", "/mj/submit/blend", BOB, {"base64Array": ["AA", "BB"]})
            assert rec.by_request(r.header("x-request-id"))[0].cost_usd == price("mj_blend", 1)
            r = await call(app, "POST", "/mj/submit/shorten", BOB, {"prompt": "a long prompt"})
            assert rec.by_request(r.header("x-request-id"))[0].cost_usd == price("mj_shorten", 1)

    asyncio.run(run())


def test_follow_ups_are_billed_by_the_action_their_custom_id_names(world):
    root, _ = world

    async def run() -> None:
        async with gateway(root) as (app, rec):
            grid = await imagine_done(app)
            tid = grid["id"]

            async def submit(endpoint: str, doc: dict[str, Any]) -> tuple[Any, Decimal | None]:
                r = await call(app, "POST", f"/mj/submit/{endpoint}", ALICE, doc)
                assert r.status == 200, r.sent
                return r.json(), rec.by_request(r.header("x-request-id"))[0].cost_usd

            out, cost = await submit("action", {"taskId": tid, "customId": button(grid, "upsample::1")})
            assert out["code"] == 1 and cost == price("mj_upscale")
            upscaled_id = out["result"]
            assert (await submit("action", {"taskId": tid, "customId": button(grid, "variation::2")}))[1] \
                == price("mj_variation")
            assert (await submit("action", {"taskId": tid, "customId": button(grid, "reroll")}))[1] \
                == price("mj_reroll")
            assert (await submit("change", {"taskId": tid, "action": "UPSCALE", "index": 3}))[1] \
                == price("mj_upscale")
            assert (await submit("simple-change", {"content": f"{tid} V1"}))[1] == price("mj_variation")

            async def upscale_done() -> dict[str, Any] | None:
                doc = (await call(app, "GET", f"/mj/task/{upscaled_id}/fetch", ALICE)).json()
                return doc if doc["status"] == "SUCCESS" else None

            upscaled = await until(upscale_done)
            assert (await submit("action", {"taskId": upscaled_id, "customId": button(upscaled, "pan_left")}))[1] \
                == price("mj_pan")
            assert (await submit("action", {"taskId": upscaled_id, "customId": button(upscaled, "Outpaint")}))[1] \
                == price("mj_zoom")
            # Custom Zoom opens a modal (code 21, free); the modal submit is what is billed
            out, cost = await submit("action", {"taskId": upscaled_id, "customId": button(upscaled, "CustomZoom")})
            assert out["code"] == 21 and cost == 0
            out, cost = await submit("modal", {"taskId": out["result"], "prompt": "a cat --zoom 1.5"})
            assert out["code"] == 1 and cost == price("mj_modal")

    asyncio.run(run())


def test_failed_task_is_refunded_exactly_once_across_fetches_and_workers(world):
    root, _ = world

    async def run() -> None:
        async with gateway(root) as (app1, rec1), gateway(root) as (app2, rec2):
            r = await call(app1, "POST", "/mj/submit/imagine", ALICE, {"prompt": "FAIL please"})
            request_id, tid = r.header("x-request-id"), r.json()["result"]
            docs = await asyncio.gather(
                *(call(app, "GET", f"/mj/task/{tid}/fetch", ALICE) for app in (app1, app2, app1, app2)),
                call(app2, "POST", "/mj/task/list-by-condition", ALICE, {"ids": [tid]}),
            )
            assert docs[0].json()["status"] == "FAILURE"
            assert docs[-1].json()[0]["failReason"]
            for app in (app1, app2):
                assert (await call(app, "GET", f"/mj/task/{tid}/fetch", ALICE)).json()["status"] == "FAILURE"
            refunds = [row for row in rec1.rows + rec2.rows if row.error_type == "mj_refund"]
            assert len(refunds) == 1
            refund = refunds[0]
            assert refund.request_id == f"{request_id}-refund"
            assert refund.cost_usd == -price("mj_imagine")
            assert (refund.key_id, refund.group, refund.endpoint) == ("alice", "pro", "mj/submit/imagine")
            billed = rec1.by_request(request_id)[0].cost_usd
            assert billed is not None and billed + refund.cost_usd == 0

        async with gateway(root) as (app3, rec3):  # after a restart: still refunded once only
            assert (await call(app3, "GET", f"/mj/task/{tid}/fetch", ALICE)).json()["status"] == "FAILURE"
            assert not rec3.rows

    asyncio.run(run())


def test_background_poller_finishes_and_refunds_tasks_nobody_fetches(world):
    root, (a, b) = world

    async def run() -> None:
        async with gateway(root, poll_s=0.05) as (app, rec):
            ok = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": "fine"})
            bad = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": "FAIL later"})
            ok_id, bad_id = ok.json()["result"], bad.json()["result"]
            refund_id = f"{bad.header('x-request-id')}-refund"
            await until(lambda: rec.by_request(refund_id))
            store = app.state.midjourney.store  # type: ignore[union-attr]

            async def ok_finished() -> bool:
                row = await store.get(ok_id)
                return row is not None and row.status == "SUCCESS" and row.finished

            await until(ok_finished)
            assert (a.tasks | b.tasks)[bad_id].status == "FAILURE"
            assert len(rec.by_request(refund_id)) == 1

    asyncio.run(run())


def test_refused_and_denied_submits_leave_a_row_without_a_charge(world):
    root, (a, b) = world

    async def run() -> None:
        async with gateway(root) as (app, rec):
            r = await call(app, "POST", "/mj/submit/imagine", MJ_KEYS["nomj"], {"prompt": "x"})
            assert r.status == 403 and r.json()["code"] == 4
            row = rec.by_request(r.header("x-request-id"))[0]
            assert (row.status, row.error_type, row.cost_usd, row.key_id) == (403, "model_not_allowed", None, "nomj")
            r = await call(app, "POST", "/mj/submit/imagine", None, {"prompt": "x"})
            assert r.status == 401 and rec.by_request(r.header("x-request-id"))[0].key_id is None
            r = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": ""})
            assert r.status == 400 and rec.by_request(r.header("x-request-id"))[0].cost_usd is None
            for proxy in (a, b):
                proxy.script_codes((24, "banned prompt: nsfw"))
            r = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": "bad words"})
            assert r.status == 200 and r.json()["code"] == 24 and r.json()["result"] is None
            row = rec.by_request(r.header("x-request-id"))[0]
            assert (row.status, row.error_type, row.cost_usd) == (200, "mj_banned_prompt", None)
            assert sum(len(p.codes) for p in (a, b)) == 1  # a refusal is final: no second upstream

    asyncio.run(run())


def test_a_full_queue_sends_the_submit_to_the_other_upstream(world):
    root, (a, b) = world

    async def run() -> None:
        async with gateway(root) as (app, rec):
            a.script_codes((23, "queue is full"))
            moved = None
            for _ in range(40):
                r = await call(app, "POST", "/mj/submit/imagine", BOB, {"prompt": "x"})
                assert r.json()["code"] == 1 and r.header("x-tollgate-provider") == "mj-b"
                row = rec.by_request(r.header("x-request-id"))[0]
                if row.attempts == 2:
                    moved = row
                    break
            assert moved is not None and moved.cost_usd == price("mj_imagine", 1) and not a.codes
            a.script_codes((23, "queue is full"))
            b.script_codes((23, "queue is full"))
            r = await call(app, "POST", "/mj/submit/imagine", BOB, {"prompt": "x"})
            assert r.json()["code"] == 23
            row = rec.by_request(r.header("x-request-id"))[0]
            assert (row.error_type, row.cost_usd, row.attempts) == ("mj_queue_full", None, 2)

    asyncio.run(run())


def test_the_example_bundle_serves_midjourney(proxies: Proxies, tmp_path: Path, monkeypatch):
    a, b = proxies
    monkeypatch.setenv("MJ_PROXY_URL", a.base_url)
    monkeypatch.setenv("MJ_API_SECRET", "mj-secret-a")
    monkeypatch.setenv("MJ_BACKUP_URL", b.base_url)
    monkeypatch.setenv("MJ_BACKUP_SECRET", "mj-secret-b")
    example = Path(__file__).resolve().parent.parent / "examples" / "midjourney"

    async def run() -> None:
        recorder = ListRecorder()
        app = App()
        await app.start(ServeSettings(policies=example, data_dir=tmp_path, ledger=False, log_level="warning"),
                        recorder=recorder)
        try:
            r = await call(app, "POST", "/relax/mj/submit/imagine", "tg-demo-studio", {"prompt": "a lighthouse"})
            assert r.json()["code"] == 1 and r.header("x-tollgate-provider") == "mj-main"
            assert a.submits("imagine")[-1].mode == "relax"
            assert recorder.by_request(r.header("x-request-id"))[0].cost_usd == Decimal("0.05")
            r = await call(app, "POST", "/mj/submit/blend", "tg-demo-trial", {"base64Array": ["A", "B"]})
            assert r.status == 403 and r.json()["description"] == "blend is not part of the trial plan"
            r = await call(app, "POST", "/mj/submit/describe", "tg-demo-trial", {"base64": "AAAA"})
            assert recorder.by_request(r.header("x-request-id"))[0].cost_usd == Decimal("0.015")
        finally:
            await app.stop()

    asyncio.run(run())


def test_an_id_two_upstreams_both_use_is_namespaced_for_the_second_task(world):
    root, (a, b) = world
    a.next_ids.append("777")
    b.next_ids.append("777")

    async def run() -> None:
        async with gateway(root) as (app, _):
            ids = []
            for _ in range(60):
                if not (a.next_ids or b.next_ids):
                    break
                r = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": "twins"})
                ids.append((r.json()["result"], r.header("x-tollgate-provider")))
            assert not (a.next_ids or b.next_ids)
            twins = [(i, p) for i, p in ids if i.endswith("777")]
            assert sorted(i for i, _ in twins) == sorted(["777", f"{twins[1][1]}:777"])
            second_id, provider = twins[1]
            proxy = a if provider == "mj-a" else b
            doc = await imagine_poll(app, second_id)
            assert doc["id"] == second_id and proxy.received[-1].path == "/mj/task/777/fetch"
            r = await call(app, "POST", "/mj/submit/action", ALICE,
                           {"taskId": second_id, "customId": button(doc, "upsample::2")})
            assert r.json()["code"] == 1 and proxy.submits("action")[-1].json()["taskId"] == "777"
            listed = await call(app, "POST", "/mj/task/list-by-condition", ALICE, {"ids": [second_id, "777"]})
            assert sorted(t["id"] for t in listed.json()) == sorted([second_id, "777"])

    asyncio.run(run())


async def imagine_poll(app: App, task_id: str, key: str = ALICE) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        doc = (await call(app, "GET", f"/mj/task/{task_id}/fetch", key)).json()
        return doc if doc["status"] in ("SUCCESS", "FAILURE") else None

    return await until(done)  # type: ignore[no-any-return]


def test_cancelled_task_is_refunded_too(world):
    root, _ = world

    async def run() -> None:
        async with gateway(root) as (app, rec):
            r = await call(app, "POST", "/mj/submit/imagine", ALICE, {"prompt": "CANCEL me"})
            request_id, tid = r.header("x-request-id"), r.json()["result"]
            assert (await call(app, "GET", f"/mj/task/{tid}/fetch", ALICE)).json()["status"] == "CANCEL"
            await call(app, "GET", f"/mj/task/{tid}/fetch", ALICE)
            refunds = [row for row in rec.rows if row.error_type == "mj_refund"]
            assert [r.request_id for r in refunds] == [f"{request_id}-refund"]
            assert refunds[0].cost_usd == -price("mj_imagine")

    asyncio.run(run())
