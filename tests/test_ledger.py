"""The usage ledger: spool durability, exactly-once ingest, ownership, queries while serving,
and a SIGKILL in the middle of traffic losing nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway.usage.client import call
from gateway.usage.lock import try_lock
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore, QueryError
from tests.conftest import KEYS, write_relay_bundle
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import ROOT, GatewayProcess


def row(i: int, when: dt.datetime | None = None, cost: str | None = "0.000001000") -> UsageRecord:
    now = when or dt.datetime.now(dt.UTC)
    return UsageRecord(request_id=f"r{i}", started_at=now, finished_at=now, key_id="k", status=200,
                       prompt_tokens=10, completion_tokens=i, cost_usd=Decimal(cost) if cost else None,
                       tags=["t"], usage_source="upstream")


def count(store: LedgerStore) -> int:
    return int(store.query("SELECT count(*) FROM usage")["rows"][0][0])


def test_ingest_is_exactly_once_even_if_segments_survive(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    for i in range(5):
        writer.append(row(i))
    writer.close()
    segments = ready_segments(tmp_path / "spool")
    backup = tmp_path / "backup"
    backup.mkdir()
    for seg in segments:
        shutil.copy(seg, backup / seg.name)
    store = LedgerStore(tmp_path / "u.duckdb")
    assert store.ingest(segments) == 5
    for seg in backup.iterdir():  # a crash after COMMIT but before unlink leaves the files behind
        shutil.copy(seg, tmp_path / "spool" / seg.name)
    assert store.ingest(ready_segments(tmp_path / "spool")) == 0
    assert count(store) == 5 and not list((tmp_path / "spool").iterdir())
    got = store.query("SELECT cost_usd, tags FROM usage WHERE request_id = 'r3'")["rows"][0]
    assert got == ["0.000001000", ["t"]]


def test_dead_writer_segment_is_recovered_to_its_last_full_line(tmp_path: Path) -> None:
    script = f"""
import datetime as dt, os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from gateway.usage.spool import SpoolWriter
from gateway.usage.record import UsageRecord
w = SpoolWriter(Path({str(tmp_path / 'spool')!r}), rotate_s=3600)
now = dt.datetime.now(dt.UTC)
for i in range(7):
    w.append(UsageRecord(request_id=f"k{{i}}", started_at=now, finished_at=now))
os.write(w._fd, b'{{"request_id": "half')  # killed in the middle of a write
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -signal.SIGKILL
    store = LedgerStore(tmp_path / "u.duckdb")
    assert store.ingest(ready_segments(tmp_path / "spool")) == 7


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from gateway.usage.lock import try_lock
assert try_lock(Path({str(tmp_path)!r})) is not None
print("locked", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    assert try_lock(tmp_path) is None
    holder.kill()
    holder.wait()
    fd = try_lock(tmp_path)  # the OS released the dead owner's lock
    assert fd is not None
    os.close(fd)


def test_only_read_only_sql(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "u.duckdb")
    for sql in ("DELETE FROM usage", "DROP TABLE usage", "SELECT 1; DELETE FROM usage",
                "COPY usage TO '/tmp/x.csv'", "ATTACH '/tmp/other.db'"):
        with pytest.raises(QueryError):
            store.query(sql)
    assert store.query("WITH a AS (SELECT 1 AS x) SELECT x FROM a")["rows"] == [[1]]


def test_retention_rolls_old_rows_into_daily_totals(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    for i in range(4):
        writer.append(row(i, when=old))
    writer.append(row(9))
    writer.close()
    store = LedgerStore(tmp_path / "u.duckdb")
    store.ingest(ready_segments(tmp_path / "spool"))
    assert store.apply_retention(30) == 4
    assert count(store) == 1
    daily = store.query("SELECT requests, completion_tokens, cost_usd FROM usage_daily")["rows"]
    assert daily == [[4, 6, "0.000004000"]]


def _requests(gw: GatewayProcess, a: FakeUpstream) -> int:
    """A mix of served, streamed, refused, failed and cancelled requests; returns how many."""
    h = {"authorization": f"Bearer {KEYS['client']}"}
    sent = 0
    with httpx.Client(base_url=gw.url, headers=h, timeout=10) as c:
        for _ in range(5):
            assert c.post("/v1/chat/completions", json={"model": "m-a", "messages": []}).status_code == 200
            sent += 1
        for _ in range(3):
            with c.stream("POST", "/v1/chat/completions",
                          json={"model": "m-a", "stream": True, "messages": []}) as r:
                r.read()
            sent += 1
        assert c.post("/v1/chat/completions", json={"model": "nope", "messages": []}).status_code == 404
        assert c.post("/v1/chat/completions", json={"model": "m-a"}, headers={"authorization": "Bearer x"}).status_code == 401
        a.script("bad-request", status=400)
        assert c.post("/v1/chat/completions", json={"model": "bad-request", "messages": []}).status_code == 400
        sent += 3
        a.script("slow-stream", chunk_delay=0.2, chunks=[f"w{i} " for i in range(30)])
        with c.stream("POST", "/v1/chat/completions",
                      json={"model": "slow-stream", "stream": True, "messages": []}) as r:
            next(r.iter_raw())  # read the first chunk, then hang up
        sent += 1
    return sent


def _sql(data: Path, sql: str) -> list[list[object]]:
    answer = call(data, {"op": "query", "sql": sql})
    assert "error" not in answer, answer
    return list(answer["rows"])


def test_sigkill_loses_no_usage(upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path) -> None:
    a, b = upstreams
    a.reset()
    write_relay_bundle(tmp_path / "policies", a, b)
    data = tmp_path / "data"
    # a long ingest period: at the kill, every row is still in the spool only
    gw = GatewayProcess(tmp_path / "policies", data, env={"TOLLGATE_LEDGER_INTERVAL_S": "60"}).start()
    sent = _requests(gw, a)

    def spooled() -> int:
        return sum(p.read_bytes().count(b"\n") for p in (data / "spool").iterdir())

    # every row is in the spool (ingest deletes segments, so none was loaded yet), the
    # cancelled request's included
    assert a.wait_for(lambda: spooled() == sent)
    gw.kill()  # SIGKILL to the whole process group: no flush, no goodbye
    gw = GatewayProcess(tmp_path / "policies", data).start()
    try:
        deadline = time.monotonic() + 10
        while _sql(data, "SELECT count(*) FROM usage")[0][0] != sent and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sql(data, "SELECT count(*) FROM usage")[0][0] == sent
        served = _sql(data, "SELECT prompt_tokens, completion_tokens, cached_tokens, cost_usd, usage_source "
                            "FROM usage WHERE status = 200 AND NOT stream")
        # fake upstream: 12 prompt (4 cached), 5 completion; price m-a: 1.0 in / 2.0 out per Mtok
        assert served == [[12, 5, 4, "0.000022000", "upstream"]] * 5
        streamed = _sql(data, "SELECT completion_tokens, usage_source FROM usage WHERE stream AND NOT cancelled")
        assert streamed == [[5, "upstream"]] * 3
        cancelled = _sql(data, "SELECT status, usage_source, completion_tokens > 0, cost_usd IS NULL "
                               "FROM usage WHERE cancelled")
        # the 200 had been sent when the client hung up; slow-stream has no price: NULL, not $0
        assert cancelled == [[200, "estimated", True, True]]
        errors = sorted(_sql(data, "SELECT status, error_type FROM usage WHERE status >= 400 AND status < 499"))
        assert errors == [[400, "upstream_error"], [401, "invalid_api_key"], [404, "model_not_found"]]
    finally:
        gw.stop()


def test_cli_queries_while_serving(upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path) -> None:
    a, b = upstreams
    a.reset()
    write_relay_bundle(tmp_path / "policies", a, b)
    data = tmp_path / "data"
    with GatewayProcess(tmp_path / "policies", data) as gw:
        h = {"authorization": f"Bearer {KEYS['client']}"}
        for _ in range(4):
            httpx.post(f"{gw.url}/v1/chat/completions", headers=h, json={"model": "m-a", "messages": []})
        cli = [sys.executable, "-m", "gateway", "usage"]
        deadline = time.monotonic() + 10
        out = ""
        while time.monotonic() < deadline:
            done = subprocess.run([*cli, "sql", "SELECT count(*) AS n FROM usage", "--data-dir", str(data),
                                   "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=True)
            out = done.stdout
            if json.loads(out) == [{"n": 4}]:
                break
            time.sleep(0.1)
        assert json.loads(out) == [{"n": 4}]
        report = subprocess.run([*cli, "report", "--by", "model", "--data-dir", str(data)], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        assert "m-a" in report and "(1 row)" in report
        export = tmp_path / "usage.parquet"
        subprocess.run([*cli, "export", "--out", str(export), "--data-dir", str(data)], cwd=ROOT, check=True)
        assert export.stat().st_size > 0
        bad = subprocess.run([*cli, "sql", "DELETE FROM usage", "--data-dir", str(data)], cwd=ROOT,
                             capture_output=True, text=True, check=False)
        assert bad.returncode == 1 and "read-only" in bad.stderr
        r = httpx.post(f"{gw.url}/admin/usage/query", headers={"authorization": f"Bearer {KEYS['admin']}"},
                       json={"sql": "SELECT key_id, sum(cost_usd) AS usd FROM usage GROUP BY 1"})
        assert r.status_code == 200 and r.json()["rows"] == [["client", "0.000088000"]]
        r = httpx.post(f"{gw.url}/admin/usage/query", headers=h, json={"sql": "SELECT 1"})
        assert r.status_code == 401
