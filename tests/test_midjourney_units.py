"""Midjourney pieces on their own: action names from endpoints and button ids, prices, and the
sqlite task store shared by worker processes (ids, ownership lists, refund and poll claims)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config.snapshot import PriceRuntime
from gateway.config.types import Price
from gateway.midjourney.actions import (
    BadAction,
    action_cost,
    change_action,
    custom_id_action,
    parse_simple_change,
)
from gateway.midjourney.tasks import TaskRow, TaskStore
from gateway.providers.wire import midjourney as wire


@pytest.mark.parametrize(("custom_id", "action"), [
    ("MJ::JOB::upsample::1::3dbbd469-36af-4a0f-8f02-df6c579e7011", "mj_upscale"),
    ("MJ::JOB::upsample_v6_2x_subtle::1::3dbbd469::SOLO", "mj_upscale"),
    ("MJ::JOB::variation::2::3dbbd469", "mj_variation"),
    ("MJ::JOB::high_variation::1::3dbbd469::SOLO", "mj_variation"),
    ("MJ::JOB::reroll::0::3dbbd469::SOLO", "mj_reroll"),
    ("MJ::JOB::pan_left::1::3dbbd469::SOLO", "mj_pan"),
    ("MJ::Outpaint::50::1::3dbbd469::SOLO", "mj_zoom"),
    ("MJ::CustomZoom::3dbbd469", "mj_custom_zoom"),
    ("MJ::Inpaint::1::3dbbd469::SOLO", "mj_inpaint"),
    ("MJ::Job::PicReader::1", "mj_imagine"),
    ("MJ::BOOKMARK::3dbbd469", "mj_bookmark"),
])
def test_custom_id_names_the_billed_action(custom_id: str, action: str) -> None:
    assert custom_id_action(custom_id) == action


@pytest.mark.parametrize("custom_id", ["", "MJ", "MJ::JOB", "XX::JOB::upsample::1::h", "MJ::JOB::::1"])
def test_unreadable_custom_ids_are_refused(custom_id: str) -> None:
    with pytest.raises(BadAction):
        custom_id_action(custom_id)


def test_simple_change_and_change_actions() -> None:
    got = parse_simple_change(" 42 v4 ")
    assert (got.task_id, got.action, got.rest) == ("42", "VARIATION", "V4")
    assert parse_simple_change("42 r").action == "REROLL"
    for bad in ("42", "42 U5", "42 X1", ""):
        with pytest.raises(BadAction):
            parse_simple_change(bad)
    assert change_action("upscale") == "mj_upscale"
    with pytest.raises(BadAction):
        change_action("ZOOM")


def test_action_cost_is_a_decimal_times_the_multiplier() -> None:
    price = PriceRuntime("midjourney", Price(per_action={"mj_imagine": 0.05, "mj_modal": 0.1}))
    assert action_cost(price, "mj_imagine", 3.0) == Decimal("0.15")
    assert action_cost(price, "mj_upscale", 1.0) is None  # unpriced: recorded as NULL cost
    assert action_cost(price, "mj_custom_zoom", 1.0) == 0  # opening a modal is free unless priced
    assert action_cost(None, "mj_imagine", 1.0) is None


def test_forward_body_maps_task_ids_and_drops_notify_hooks() -> None:
    body = b'{"taskId": "p:1", "customId": "MJ::JOB::upsample::1::h", "notifyHook": "http://x", "z": [1]}'
    out = wire.forward_body(body, {"taskId": "1"})
    assert out == b'{"taskId":"1","customId":"MJ::JOB::upsample::1::h","z":[1]}'
    assert wire.upstream_path("submit/imagine", "relax") == "mj-relax/mj/submit/imagine"
    assert wire.task_path("a/b", "fetch") == "mj/task/a%2Fb/fetch"
    assert wire.decode_state(b"") is None and wire.decode_state(b"null") is None
    assert wire.decode_state(b'{"id": "1", "status": "SUCCESS"}').status == "SUCCESS"  # type: ignore[union-attr]


def _row(task_id: str, provider: str = "mj-a", key: str = "alice", cost: str | None = "0.15") -> TaskRow:
    return TaskRow(
        id=task_id, provider=provider, upstream_id=task_id, key_id=key, group=None, model="midjourney",
        requested_model="midjourney", action="mj_imagine", mode=None, endpoint="mj/submit/imagine",
        request_id=f"req_{provider}_{task_id}", cost=Decimal(cost) if cost else None, tags=("t",),
        revision="rev", status="SUBMITTED", doc=b'{"id": "%s"}' % task_id.encode(), submitted_at=time.time(),
    )


def test_store_namespaces_colliding_ids_and_lists_only_the_owners_tasks(tmp_path: Path) -> None:
    async def run() -> None:
        store = await TaskStore(tmp_path / "mj.sqlite").open()
        a = await store.add(_row("100"), time.time())
        b = await store.add(_row("100", provider="mj-b", key="bob"), time.time())
        assert (a.id, b.id, b.upstream_id) == ("100", "mj-b:100", "100")
        again = await store.add(_row("100", key="alice", cost=None), time.time())
        assert again.id == "100" and again.cost == Decimal("0.15")  # known task: not stored twice
        await store.add(_row("101"), time.time())
        assert [t.id for t in await store.owned("alice", ["101", "mj-b:100", "100", "nope"])] == ["101", "100"]
        assert [t.id for t in await store.owned("bob", None)] == ["mj-b:100"]
        assert await store.owned("bob", []) == []
        got = await store.get("mj-b:100")
        assert got is not None and got.cost == Decimal("0.15") and got.tags == ("t",)
        await store.close()

    asyncio.run(run())


def test_refund_claim_is_won_once_across_stores_on_one_file(tmp_path: Path) -> None:
    async def run() -> None:
        stores = [await TaskStore(tmp_path / "mj.sqlite").open() for _ in range(3)]
        await stores[0].add(_row("7"), time.time())
        assert not await stores[1].claim_refund("7")  # not failed: nothing to refund
        assert await stores[1].update("7", "FAILURE", b'{"id":"7","status":"FAILURE"}', True, time.time())
        assert not await stores[2].update("7", "SUCCESS", b"{}", True, time.time())  # finished stays
        wins = await asyncio.gather(*(s.claim_refund("7") for s in stores for _ in range(5)))
        assert sum(wins) == 1
        row = await stores[0].get("7")
        assert row is not None and row.refunded and row.status == "FAILURE"
        for s in stores:
            await s.close()

    asyncio.run(run())


def test_poll_claims_lease_due_tasks_to_one_worker(tmp_path: Path) -> None:
    async def run() -> None:
        one, two = [await TaskStore(tmp_path / "mj.sqlite").open() for _ in range(2)]
        now = time.time()
        for i in range(5):
            await one.add(_row(str(i)), now - 1)
        await one.add(replace(_row("old"), submitted_at=now - 10_000), now - 1)
        first, second = await asyncio.gather(one.claim_due(now, 60, 3600, 3), two.claim_due(now, 60, 3600, 3))
        ids = [t.id for t in first + second]
        assert sorted(ids) == ["0", "1", "2", "3", "4"]  # each once; the too-old task is left alone
        assert await one.claim_due(now + 1, 60, 3600, 10) == []  # leased
        assert len(await two.claim_due(now + 61, 60, 3600, 10)) == 5
        await one.close()
        await two.close()

    asyncio.run(run())
