"""One live gateway per node id in a shared Parquet directory (gateway/usage/claim.py): a second
instance with the same `node_id` is refused with a clear error and keeps its rows queued; the
same node restarting reclaims its id quietly; an expired or released claim is taken over.
Real ingester processes, real files, the real CLI and gateway."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.usage.claim import Claim, claim_path, read_claim
from gateway.usage.client import call
from gateway.usage.parquet import ParquetSink
from gateway.usage.spool import ready_segments
from gateway.usage.store import LedgerStore
from tests.gateway_process import GatewayProcess
from tests.test_usage_parquet import ROOT, Ingester, cli, files, parquet_sql, spool

STOPPED = "usage Parquet export stopped"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ledgers(shared: Path) -> set[str]:
    """The ledger ids in the file names (`<batch>-<ledger>.parquet`): who wrote them."""
    return {p.stem.split("-")[1] for p in files(shared)}


def foreign_claim(shared: Path, node: str, age_s: float, host: str = "gw-elsewhere") -> Claim:
    """A claim as another machine's gateway leaves it, last refreshed `age_s` ago."""
    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)).isoformat(timespec="seconds")
    claim = Claim(node, "f" * 32, host, "/srv/other/data", "0123456789ab", 4242, stamp, stamp)
    path = claim_path(shared, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(claim))
    return claim


def outbox(data: Path) -> int:
    answer = call(data, {"op": "query", "sql": "SELECT count(*) FROM parquet_outbox"})
    return int(answer["rows"][0][0])


def test_a_second_gateway_with_the_same_node_id_is_refused_until_released(tmp_path: Path) -> None:
    shared, a, b, log_b = tmp_path / "shared", tmp_path / "a", tmp_path / "b", tmp_path / "b.log"
    flags = ("--node-id", "dup", "--parquet-dir", str(shared), "--parquet-interval", "0")
    spool(a, "a", 10, "0.000000001")
    first = Ingester(a, *flags)
    assert first.count() == 10
    wait_for(lambda: len(files(shared)) == 1, "the first node's file")
    writer = ledgers(shared)

    spool(b, "b", 6, "0.000000002")
    second = Ingester(b, *flags, log=log_b)
    assert second.count() == 6  # its DuckDB ledger records everything
    wait_for(lambda: STOPPED in log_b.read_text(), "the second node's error")
    problem = json.loads((b / "parquet-claim.json").read_text())
    assert problem["status"] == "node_id_conflict" and problem["node_id"] == "dup"
    assert problem["holder"]["data_dir"] == str(a.resolve()) and problem["this"]["data_dir"] == str(b.resolve())

    spool(a, "a2", 4, "0.000000001")  # the first node goes on exporting ...
    assert first.count() == 14
    spool(b, "b2", 2, "0.000000002")  # ... the second one queues
    assert second.count() == 8
    wait_for(lambda: parquet_sql(shared, "SELECT count(*) AS n FROM usage") == [{"n": 14}], "the first node's rows")
    assert outbox(b) == 8 and ledgers(shared) == writer
    text = log_b.read_text()
    line = next(x for x in text.splitlines() if STOPPED in x)
    assert " ERROR " in line and "node_id 'dup'" in line and text.count(STOPPED) == 1  # once, not per tick
    for needed in (str(a.resolve()), str(b.resolve()), "node_id", "TOLLGATE_NODE_ID", "--node-id",
                   f"tollgate usage claims --parquet {shared} --release dup"):
        assert needed in line

    first.stop()  # gone for good: its claim stays until it expires or is released
    listed = cli("claims", "--parquet", str(shared)).stdout
    assert "dup" in listed and str(a.resolve()) in listed and "active" in listed
    released = cli("claims", "--parquet", str(shared), "--release", "dup").stdout
    assert "released node id 'dup'" in released and str(a.resolve()) in released
    wait_for(lambda: outbox(b) == 0, "the queued rows to be written")  # the second node takes the id over
    assert not (b / "parquet-claim.json").exists() and "export resumed" in log_b.read_text()
    second.stop()
    rows = parquet_sql(shared, "SELECT node, count(*) AS n, count(DISTINCT request_id) AS d FROM usage GROUP BY 1")
    assert rows == [{"node": "dup", "n": 22, "d": 22}]
    claim = read_claim(claim_path(shared, "dup"))
    assert claim is not None and claim.data_dir == str(b.resolve())


def test_the_same_node_restarting_reclaims_its_id_without_an_alarm(tmp_path: Path) -> None:
    shared, data, log = tmp_path / "shared", tmp_path / "data", tmp_path / "node.log"
    flags = ("--node-id", "n5", "--parquet-dir", str(shared), "--parquet-interval", "0")
    tokens = []
    for run, end in enumerate(("stop", "kill", "stop")):
        spool(data, f"r{run}", 5, "0.000000001")
        node = Ingester(data, *flags, log=log)
        assert node.count() == 5 * (run + 1)
        claim = read_claim(claim_path(shared, "n5"))
        assert claim is not None and claim.pid == node.proc.pid
        tokens.append(claim.token)
        wait_for(lambda: outbox(data) == 0, "the export")
        node.stop() if end == "stop" else node.kill()  # killed: its claim is left as fresh as can be
    assert len(set(tokens)) == 3
    text = log.read_text()
    assert "ERROR" not in text and "took over" not in text and STOPPED not in text
    assert parquet_sql(shared, "SELECT count(DISTINCT request_id) AS n FROM usage") == [{"n": 15}]


def test_an_expired_claim_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    caplog.set_level(logging.INFO, "tollgate.usage")
    foreign_claim(shared, "n6", age_s=30)  # live elsewhere
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(shared, "n6", 0))
    spool(data, "x", 7, "0.000000001")
    assert store.ingest(ready_segments(data / "spool")) == 7
    assert store.parquet.pending() == 7 and files(shared) == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gw-elsewhere" in errors[0].getMessage()
    assert "expires at" in errors[0].getMessage()

    foreign_claim(shared, "n6", age_s=3600)  # its holder stopped refreshing an hour ago
    store.ingest([])  # the next export attempt
    assert store.parquet.pending() == 0 and len(files(shared)) == 1
    assert any("took over node_id 'n6'" in r.getMessage() for r in caplog.records)
    assert not (data / "parquet-claim.json").exists()
    store.close()
    listed = cli("claims", "--parquet", str(shared)).stdout
    assert str(data.resolve()) in listed and "gw-elsewhere" not in listed


def test_renaming_the_refused_node_writes_its_queued_rows_under_the_new_name(tmp_path: Path) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    foreign_claim(shared, "taken", age_s=5)
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(shared, "taken", 0))
    spool(data, "q", 5, "0.000000001")
    store.ingest(ready_segments(data / "spool"))
    store.close()  # refused to the end: still queued
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(shared, "mine", 0))  # the operator's fix
    store.close()
    assert parquet_sql(shared, "SELECT node, count(*) AS n FROM usage GROUP BY 1") == [{"node": "mine", "n": 5}]


def test_readyz_metrics_and_admin_policy_report_the_conflict(tmp_path: Path) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    foreign_claim(shared, "gw-x", age_s=1)
    env = {"TOLLGATE_NODE_ID": "gw-x", "TOLLGATE_USAGE_PARQUET_DIR": str(shared)}
    with GatewayProcess(ROOT / "policies", data, env=env) as gw:
        wait_for(lambda: "usage_parquet" in httpx.get(f"{gw.url}/readyz").json(), "/readyz to report it")
        ready = httpx.get(f"{gw.url}/readyz")
        assert ready.status_code == 200  # still serving and recording usage
        assert ready.json()["usage_parquet"]["holder"]["host"] == "gw-elsewhere"
        assert "tollgate_usage_parquet_conflict 1" in httpx.get(f"{gw.url}/metrics").text
        status = httpx.get(f"{gw.url}/admin/policy", headers={"authorization": "Bearer tg-admin-demo"}).json()
        parquet = status["usage_parquet"]
        assert parquet["status"] == "node_id_conflict" and parquet["node_id"] == "gw-x"
        assert "TOLLGATE_NODE_ID" in parquet["problem"]["message"]
