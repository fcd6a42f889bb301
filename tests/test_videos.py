"""The OpenAI Videos API end to end: the official openai SDK -> a real `tollgate serve` -> fake
OpenAI, Azure and Gemini (Veo) video upstreams on loopback; charges, refunds and the `tasks`
view read back from the real DuckDB ledger. The restart test is tests/test_tasks_restart.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.video_upstream import VIDEO_BYTES
from tests.gateway_process import GatewayProcess
from tests.tasks_support import (
    FAST_POLL,
    KEYS,
    Upstreams,
    client,
    finished,
    ledger,
    start_upstreams,
    stop_upstreams,
    task_rows,
    until,
    write_bundle,
)

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture(scope="module")
def ups() -> Iterator[Upstreams]:
    started = start_upstreams()
    yield started
    stop_upstreams(started)


@pytest.fixture(scope="module")
def gw(ups: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("videos")
    with GatewayProcess(write_bundle(root, ups), root / "data", env=FAST_POLL) as gateway:
        yield gateway


def test_sdk_create_poll_download_and_bill_per_second(gw: GatewayProcess, ups: Any) -> None:
    c = client(gw)
    video = c.videos.create(prompt="a fox in snow", model="sora-2", seconds="8", size="1280x720")
    assert video.object == "video" and video.status == "queued" and video.model == "sora-2"
    sent = ups[0].creates()[-1]
    assert sent.headers["Authorization"] == "Bearer sk-video-upstream" and KEYS["alice"].encode() not in sent.body
    done = finished(c, video.id)
    assert done.status == "completed" and done.progress == 100 and done.id == video.id
    assert c.videos.download_content(video.id).content == VIDEO_BYTES
    ranged = httpx.get(f"{gw.url}/v1/videos/{video.id}/content", headers={
        "authorization": f"Bearer {KEYS['alice']}", "range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == VIDEO_BYTES[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(VIDEO_BYTES)}"
    rows = task_rows(gw, video.id, 2)
    charge, end = rows
    assert Decimal(str(charge["cost_usd"])) == Decimal("0.30") * 8 * 2  # by size, times alice's multiplier
    assert (charge["endpoint"], charge["error_type"], end["error_type"]) == ("videos", None, "task_succeeded")
    view = ledger(gw, f"SELECT status, charged_usd, refunded_usd, duration_s FROM tasks WHERE task_id = '{video.id}'")
    assert view[0]["status"] == "succeeded" and Decimal(str(view[0]["refunded_usd"])) == 0


def test_failed_video_is_refunded_once(gw: GatewayProcess) -> None:
    c = client(gw)
    video = c.videos.create(prompt="FAIL this one", model="sora-2")  # defaults: 4 s at 720x1280
    for _ in range(3):
        assert finished(c, video.id).status == "failed"
    rows = task_rows(gw, video.id, 3)
    charge = [r for r in rows if r["error_type"] is None]
    refunds = [r for r in rows if r["error_type"] == "video_refund"]
    assert len(charge) == 1 and len(refunds) == 1
    assert Decimal(str(charge[0]["cost_usd"])) == Decimal("0.10") * 4 * 2
    assert Decimal(str(refunds[0]["cost_usd"])) == -Decimal(str(charge[0]["cost_usd"]))
    assert refunds[0]["request_id"] == f"{charge[0]['request_id']}-refund"
    view = ledger(gw, f"SELECT status, cost_usd FROM tasks WHERE task_id = '{video.id}'")
    assert view[0]["status"] == "failed" and Decimal(str(view[0]["cost_usd"])) == 0


def test_another_key_cannot_see_read_download_remix_or_delete(gw: GatewayProcess) -> None:
    mine = client(gw).videos.create(prompt="private", model="sora-2")
    bob = client(gw, "bob")
    with pytest.raises(openai.NotFoundError) as err:
        bob.videos.retrieve(mine.id)
    assert err.value.body["code"] == "video_not_found"  # type: ignore[index]
    for method, path in (("GET", "/content"), ("DELETE", ""), ("POST", "/remix")):
        r = httpx.request(method, f"{gw.url}/v1/videos/{mine.id}{path}", json={"prompt": "x"},
                          headers={"authorization": f"Bearer {KEYS['bob']}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "video_not_found", (method, path)
    assert mine.id not in [v.id for v in bob.videos.list()]
    with pytest.raises(openai.NotFoundError):
        client(gw).videos.retrieve("video_never_made")


def test_list_is_paginated_like_openai(gw: GatewayProcess) -> None:
    c = client(gw, "bob")
    made = [c.videos.create(prompt=f"clip {i}", model="sora-2").id for i in range(3)]
    first = c.videos.list(limit=2)
    assert [v.id for v in first.data] == made[::-1][:2] and first.has_more
    second = c.videos.list(limit=2, after=first.data[-1].id)
    assert [v.id for v in second.data][:1] == made[:1]
    assert [v.id for v in c.videos.list(order="asc", limit=100).data][-3:] == made


def test_azure_and_remix_and_delete(gw: GatewayProcess, ups: Any) -> None:
    c = client(gw)
    video = c.videos.create(prompt="harbour at dusk", model="sora-az", seconds="4")
    sent = ups[1].creates()[-1]
    assert sent.path == "/openai/v1/videos" and sent.headers["api-key"] == "az-video-key"
    assert b"my-sora-deployment" in sent.body and video.model == "sora-az"  # the deployment upstream
    assert finished(c, video.id).status == "completed"
    remixed = c.videos.remix(video.id, prompt="now at dawn")
    assert remixed.remixed_from_video_id == video.id and remixed.id != video.id
    assert finished(c, remixed.id).remixed_from_video_id == video.id
    rows = task_rows(gw, remixed.id, 2)
    assert rows[0]["endpoint"] == "videos/remix" and Decimal(str(rows[0]["cost_usd"])) == Decimal("0.20") * 4 * 2
    deleted = c.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        c.videos.retrieve(video.id)


def test_gemini_veo_through_the_same_surface(gw: GatewayProcess, ups: Any) -> None:
    c = client(gw)
    video = c.videos.create(prompt="waves on rocks", model="veo-3", seconds="8", size="1280x720")
    assert video.id.startswith("video_") and "/operations/" not in video.id
    sent = ups[2].creates()[-1]
    assert sent.path == "/v1beta/models/veo-3:predictLongRunning"
    assert b'"aspectRatio":"16:9"' in sent.body and b'"durationSeconds":8' in sent.body
    assert finished(c, video.id).status == "completed"
    assert c.videos.download_content(video.id).content == VIDEO_BYTES
    download = [s for s in ups[2].seen if s.path.startswith("/v1beta/files/")][-1]
    assert download.headers["x-goog-api-key"] == "gem-video-key"  # same origin as the provider
    rows = task_rows(gw, video.id, 2)
    assert Decimal(str(rows[0]["cost_usd"])) == Decimal("0.40") * 8 * 2
    failed = c.videos.create(prompt="FAIL on veo", model="veo-3")
    assert finished(c, failed.id).status == "failed"
    assert [r["error_type"] for r in task_rows(gw, failed.id, 3)].count("video_refund") == 1


def test_budget_refuses_before_the_upstream_and_a_refund_gives_budget_back(gw: GatewayProcess, ups: Any) -> None:
    poor = client(gw, "poor")  # a $1 monthly budget
    ups[0].hold = True  # the videos stay queued until the refusal is seen
    try:
        doomed = poor.videos.create(prompt="FAIL later", model="sora-2", seconds="8")  # $0.80
        poor.videos.create(prompt="fine", model="sora-2", seconds="4")  # $0.40: spend 1.20
        before = len(ups[0].creates())
        with pytest.raises(openai.RateLimitError):
            poor.videos.create(prompt="over budget", model="sora-2", seconds="4")
        assert len(ups[0].creates()) == before  # refused before anything was sent
    finally:
        ups[0].hold = False
    assert finished(poor, doomed.id).status == "failed"
    task_rows(gw, doomed.id, 3)  # charge, refund, end
    assert until(lambda: _created(poor)).status == "queued"  # the refund gave $0.80 back


def _created(c: openai.OpenAI) -> Any:
    try:
        return c.videos.create(prompt="after the refund", model="sora-2", seconds="4")
    except openai.RateLimitError:
        return None


def _post(gw: GatewayProcess, **kw: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/videos", headers={"authorization": f"Bearer {KEYS['alice']}", **kw.pop("headers", {})},
                      timeout=10, **kw)


BAD_SUBMITS: list[tuple[dict[str, Any], str | None]] = [
    ({"json": {"model": "sora-2"}}, "prompt"),
    ({"json": {"prompt": "x", "seconds": "abc"}}, "seconds"),
    ({"json": {"prompt": "x", "size": "big"}}, "size"),
    ({"json": {"prompt": "x", "model": "gpt-4o"}}, "model"),
    ({"content": b"{not json"}, None),
    ({"content": b"--zz\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=zz"}}, None),
    ({"content": b"x", "headers": {"content-type": "text/plain"}}, None),
]


def test_malformed_submits_are_clear_errors_and_never_charged(gw: GatewayProcess) -> None:
    ids = []
    for kw, param in BAD_SUBMITS:
        r = _post(gw, **kw)
        assert r.status_code in (400, 404, 415), r.text
        error = r.json()["error"]
        assert error["message"] and "Traceback" not in r.text
        if param is not None:
            assert error["param"] == param or param in error["message"], error
        ids.append(r.headers["x-request-id"])
    quoted = ", ".join(f"'{i}'" for i in ids)
    rows = ledger(gw, f"SELECT cost_usd FROM usage WHERE request_id IN ({quoted})", len(ids))
    assert len(rows) == len(ids) and all(row["cost_usd"] is None for row in rows)


def test_an_upstream_task_id_given_twice_is_not_charged_twice(gw: GatewayProcess, ups: Any) -> None:
    c = client(gw)
    first = c.videos.create(prompt="one", model="sora-2")
    ups[0].duplicate_id = first.id
    try:
        with pytest.raises(openai.APIStatusError) as err:
            c.videos.create(prompt="two", model="sora-2")
    finally:
        ups[0].duplicate_id = None
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_duplicate_task"  # type: ignore[index]
    charges = [r for r in ledger(gw, f"SELECT error_type FROM usage WHERE task_id = '{first.id}'")
               if r["error_type"] is None]
    assert len(charges) == 1
