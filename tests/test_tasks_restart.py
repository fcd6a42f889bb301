"""The task engine across a gateway restart: tasks submitted to one `tollgate serve`, which stops
while they run upstream, are finished by the next one on the same data
directory, and each is billed once, the failed one refunded once (the real DuckDB ledger)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.gateway_process import GatewayProcess
from tests.tasks_support import KEYS, Upstreams, client, ledger, start_upstreams, stop_upstreams, write_bundle

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture()
def ups() -> Iterator[Upstreams]:
    started = start_upstreams()
    yield started
    stop_upstreams(started)


def test_tasks_submitted_before_a_restart_finish_and_bill_once(ups: Upstreams, tmp_path: Path) -> None:
    policies = write_bundle(tmp_path, ups)
    for up in ups:
        up.hold = True  # the upstreams keep every task running while the first gateway serves
    with GatewayProcess(policies, tmp_path / "data", env={"TOLLGATE_MJ_POLL_S": "0.2"}) as gw1:
        c = client(gw1)
        ok = c.videos.create(prompt="survives a restart", model="sora-2").id
        bad = c.videos.create(prompt="FAIL after the restart", model="veo-3").id
        r = httpx.post(f"{gw1.url}/suno/submit/music", json={"prompt": "la la"},
                       headers={"authorization": f"Bearer {KEYS['alice']}"}, timeout=10)
        song = r.json()["data"]
        assert client(gw1).videos.retrieve(ok).status == "queued"
    for up in ups:
        up.hold = False
    with GatewayProcess(policies, tmp_path / "data", env={"TOLLGATE_MJ_POLL_S": "0.2"}) as gw2:
        ids = f"'{ok}', '{bad}', '{song}'"
        sql = f"SELECT task_id, status, charged_usd, refunded_usd FROM tasks WHERE task_id IN ({ids}) " \
              "AND status <> 'pending' ORDER BY task_id"
        view = {row["task_id"]: row for row in ledger(gw2, sql, 3)}
        assert {k: v["status"] for k, v in view.items()} == {ok: "succeeded", bad: "failed", song: "succeeded"}
        assert Decimal(str(view[bad]["refunded_usd"])) == Decimal(str(view[bad]["charged_usd"])) > 0
        rows = ledger(gw2, f"SELECT task_id, error_type FROM usage WHERE task_id IN ({ids})", 7)
        kinds = sorted((r["task_id"] == bad, r["error_type"] or "charge") for r in rows)
        assert kinds == [(False, "charge"), (False, "charge"), (False, "task_succeeded"), (False, "task_succeeded"),
                         (True, "charge"), (True, "task_failed"), (True, "video_refund")]
        assert client(gw2, "bob").videos.list().data == []  # still alice's
        report = subprocess.run([sys.executable, "-m", "gateway", "usage", "report", "--by", "task", "--data-dir",
                                 str(tmp_path / "data"), "--format", "json"], capture_output=True, timeout=60,
                                check=True).stdout.decode()
        shown = {row["task_id"]: row for row in json.loads(report)} if report.startswith("[") else {
            row["task_id"]: row for row in map(json.loads, report.splitlines())}
        assert {shown[t]["status"] for t in (ok, song)} == {"succeeded"} and shown[bad]["status"] == "failed"
        assert shown[ok]["duration_s"] is not None and shown[ok]["endpoint"] == "videos"
