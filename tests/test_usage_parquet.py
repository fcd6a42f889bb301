"""Usage from many nodes as Parquet (DESIGN §6): each node's ledger owner writes what it ingests
to a shared directory; `tollgate usage sql|report --parquet DIR` reads all nodes as one table.
Real DuckDB files, real ingester processes, the real CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway.settings import ServeSettings
from gateway.usage.client import call
from gateway.usage.lock import socket_path
from gateway.usage.parquet import ParquetSink
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
YESTERDAY = NOW - dt.timedelta(days=1)


def spool(data: Path, prefix: str, n: int, cost: str, when: dt.datetime = NOW) -> None:
    """`n` rows in closed spool segments, as a worker would leave them."""
    writer = SpoolWriter(data / "spool", rotate_s=0.0)
    for i in range(n):
        writer.append(UsageRecord(request_id=f"{prefix}-{i}", started_at=when, finished_at=when, key_id=prefix,
                                  status=200, prompt_tokens=10, completion_tokens=i, cost_usd=Decimal(cost)))
        if i % 7 == 6:
            writer.rotate(force=True)  # several segments, so several ingest batches
    writer.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(extra)
    return env


class Ingester:
    """`python -m gateway.usage.ingester`, as `tollgate serve` starts it."""

    def __init__(self, data: Path, *flags: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.data = data
        self.log = log
        with contextlib.ExitStack() as files:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.usage.ingester", "--data-dir", str(data),
                 "--policies", str(data / "no-policies"), "--interval", "0.05", *flags],
                cwd=ROOT, env=env if env is not None else clean_env(),
                stderr=None if log is None else files.enter_context(log.open("ab")),
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the ingester exited"
            with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
                probe.connect(socket_path(data))
                return
            time.sleep(0.05)
        raise AssertionError("the ingester did not start")

    def count(self) -> int:
        """Rows in this node's DuckDB ledger, asked through the owner (which ingests first)."""
        answer = call(self.data, {"op": "query", "sql": "SELECT count(*) FROM usage"})
        return int(answer["rows"][0][0])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # final ingest and export, then exit
        assert self.proc.wait(30) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "usage", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, check=check)


def parquet_sql(shared: Path, sql: str) -> list[dict[str, Any]]:
    done = cli("sql", "--parquet", str(shared), "--format", "json", sql)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def files(shared: Path) -> list[Path]:
    return sorted(shared.glob("**/*.parquet")) if shared.exists() else []


def test_two_nodes_one_table(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    a, b = tmp_path / "a", tmp_path / "b"
    spool(a, "a", 30, "0.000001234")
    spool(a, "a-old", 5, "0.000000001", when=YESTERDAY)
    spool(b, "b", 20, "0.123456789")
    # node a configured by flags, node b by the environment `tollgate serve` hands down
    node_a = Ingester(a, "--node-id", "alpha", "--parquet-dir", str(shared), "--parquet-interval", "0")
    node_b = Ingester(b, env=clean_env(TOLLGATE_NODE_ID="beta", TOLLGATE_USAGE_PARQUET_DIR=str(shared),
                                       TOLLGATE_USAGE_PARQUET_INTERVAL_S="0"))
    assert node_a.count() == 35 and node_b.count() == 20
    spool(b, "b-late", 3, "0.000000007")  # a later batch, after the first files
    assert node_b.count() == 23
    node_a.stop()
    node_b.stop()

    names = {p.relative_to(shared).parts[:2] for p in files(shared)}
    assert names == {("node=alpha", f"date={NOW.date()}"), ("node=alpha", f"date={YESTERDAY.date()}"),
                     ("node=beta", f"date={NOW.date()}")}
    assert not list(shared.glob("**/*.tmp"))

    rows = parquet_sql(shared, "SELECT node, count(*) AS n, count(DISTINCT request_id) AS d, sum(cost_usd) AS cost, "
                               "min(typeof(cost_usd)) AS t FROM usage GROUP BY node ORDER BY node")
    assert [(r["node"], r["n"], r["d"]) for r in rows] == [("alpha", 35, 35), ("beta", 23, 23)]
    assert Decimal(rows[0]["cost"]) == Decimal("0.000001234") * 30 + Decimal("0.000000001") * 5
    assert Decimal(rows[1]["cost"]) == Decimal("0.123456789") * 20 + Decimal("0.000000007") * 3
    assert rows[0]["t"] == "DECIMAL(18,9)"
    # the Parquet rows are the ledger's rows, column for column
    day = parquet_sql(shared, f"SELECT request_id, started_at, tags, date FROM usage "
                              f"WHERE node = 'alpha' AND date = DATE '{YESTERDAY.date()}' ORDER BY request_id")
    assert [r["request_id"] for r in day] == [f"a-old-{i}" for i in range(5)]
    assert dt.datetime.fromisoformat(day[0]["started_at"]) == YESTERDAY and day[0]["tags"] == []

    report = cli("report", "--parquet", str(shared), "--by", "node", "--format", "csv").stdout.splitlines()
    assert report[0] == "node,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd"
    assert [line.split(",")[:3] for line in report[1:]] == [["alpha", "35", "0"], ["beta", "23", "0"]]
    table = cli("report", "--parquet", str(shared), "--by", "day").stdout
    assert "(2 rows)" in table and str(YESTERDAY.date()) in table


def test_kill_between_commit_and_export_loses_and_doubles_nothing(tmp_path: Path) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    flags = ("--node-id", "n1", "--parquet-dir", str(shared), "--parquet-interval", "3600")
    node = Ingester(data, *flags)
    spool(data, "p", 1, "0.000000003")
    assert node.count() == 1
    assert len(files(shared)) == 1  # the first rows after a quiet spell are written at once ...
    spool(data, "r", 39, "0.000000003")
    assert node.count() == 40  # ... the next ones are committed to DuckDB (and its outbox) ...
    node.kill()  # ... and killed before their export, an hour away
    assert len(files(shared)) == 1

    spool(data, "s", 4, "0.000000003")  # spooled while no ingester ran
    node = Ingester(data, *flags)  # the new owner writes what the dead one left queued, at start
    assert len(files(shared)) == 2
    assert node.count() == 44
    node.stop()  # and the last rows at shutdown
    rows = parquet_sql(shared, "SELECT count(*) AS n, count(DISTINCT request_id) AS d, sum(cost_usd) AS c FROM usage")
    assert rows[0]["n"] == rows[0]["d"] == 44 and Decimal(rows[0]["c"]) == Decimal("0.000000132")


class Crash(BaseException):
    """Stands for the process dying: nothing in the exporter catches it."""


def test_crash_after_a_file_is_renamed_before_the_outbox_forgets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    sink = ParquetSink(shared, "n1", interval_s=0)
    store = LedgerStore(data / "usage.duckdb", parquet=sink)
    spool(data, "x", 10, "0.000000005")
    spool(data, "y", 3, "0.000000005", when=YESTERDAY)
    real_replace, renamed = os.replace, []

    def replace_then_die(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        renamed.append(dst)
        if len(renamed) == 2:  # both day files in place; the outbox DELETE never runs
            raise Crash

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(Crash):
        store.ingest(ready_segments(data / "spool"))
    store.con.close()  # died: no close(), no final export
    monkeypatch.setattr(os, "replace", real_replace)
    before = files(shared)
    assert len(before) == 2

    spool(data, "z", 2, "0.000000005")  # same day as the first file, ingested after the crash
    store = LedgerStore(data / "usage.duckdb", parquet=sink)  # re-exports the queued rows at start
    store.ingest(ready_segments(data / "spool"))
    store.close()
    after = files(shared)
    assert before[0] in after and before[1] in after and len(after) == 3  # rewritten under the same names
    rows = parquet_sql(shared, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM usage")
    assert rows == [{"n": 15, "d": 15}]


def test_no_parquet_when_the_setting_is_off(tmp_path: Path) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    spool(data, "q", 12, "0.000000002")
    node = Ingester(data, env=clean_env(TOLLGATE_NODE_ID="quiet"))
    assert node.count() == 12
    node.stop()
    assert not shared.exists() and files(tmp_path) == []
    con = duckdb.connect(str(data / "usage.duckdb"), read_only=True)  # nobody owns it now
    try:
        row = con.execute("SELECT count(*) FROM parquet_outbox").fetchone()
        assert row is not None and row[0] == 0  # nothing queued for a sink that does not exist
    finally:
        con.close()
    # unset settings stay unset through the environment handed to workers and the ingester
    env = ServeSettings(node_id="quiet").to_env()
    assert "TOLLGATE_USAGE_PARQUET_DIR" not in env and env["TOLLGATE_NODE_ID"] == "quiet"


def test_cli_on_a_stopped_gateway_queues_rows_for_the_next_export(tmp_path: Path) -> None:
    shared, data = tmp_path / "shared", tmp_path / "data"
    flags = ("--node-id", "n2", "--parquet-dir", str(shared), "--parquet-interval", "0")
    spool(data, "first", 3, "0.000000001")
    node = Ingester(data, *flags)
    node.stop()
    spool(data, "left", 4, "0.000000001")  # leftovers, loaded by the CLI (no sink in its env)
    assert cli("sql", "--data-dir", str(data), "--format", "csv", "SELECT count(*) AS n FROM usage").stdout \
        .splitlines() == ["n", "7"]
    Ingester(data, *flags).stop()
    assert parquet_sql(shared, "SELECT node, count(DISTINCT request_id) AS n FROM usage GROUP BY 1") == [
        {"node": "n2", "n": 7}]


def test_cli_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = cli("sql", "--parquet", str(tmp_path / "empty"), "SELECT 1", check=False)
    assert done.returncode == 1 and "no Parquet files under" in done.stderr
    done = cli("report", "--by", "node", "--data-dir", str(tmp_path / "d"), check=False)
    assert done.returncode == 2 and "--by node needs --parquet" in done.stderr
    shared = tmp_path / "shared"
    store = LedgerStore(tmp_path / "d" / "usage.duckdb", parquet=ParquetSink(shared, "n3", 0))
    spool(tmp_path / "d", "e", 1, "0.000000001")
    store.ingest(ready_segments(tmp_path / "d" / "spool"))
    store.close()
    done = cli("sql", "--parquet", str(shared), "DELETE FROM usage", check=False)
    assert done.returncode == 1 and "read-only" in done.stderr
    with pytest.raises(ValueError):
        ServeSettings(node_id="a/b")


def test_an_unreachable_directory_does_not_stop_ingesting(tmp_path: Path) -> None:
    data, blocker = tmp_path / "data", tmp_path / "not-a-dir"
    blocker.write_text("a file where the mount should be")
    spool(data, "m", 6, "0.000000004")
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(blocker / "usage", "n4", 0))
    assert store.ingest(ready_segments(data / "spool")) == 6  # DuckDB got the rows; the export failed
    assert store.parquet.pending() == 6
    store.close()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real").mkdir()
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(tmp_path / "link", "n4", 0))  # back
    assert store.parquet.pending() == 0
    store.close()
    assert parquet_sql(tmp_path / "link", "SELECT node, count(*) AS n FROM usage GROUP BY 1") == [{"node": "n4", "n": 6}]
