"""`POST /admin/usage/query` and `tollgate usage sql|export` are read-only (issue 12, defect 2).

A real gateway over loopback gets a corpus of write and escape attempts (EXPLAIN ANALYZE of a
write, writing CTEs, PRAGMA/SET/CALL, file readers on the data directory and /etc/passwd,
ATTACH, INSTALL/LOAD, COPY, multi-statements, statements hidden behind comments). Every one
must be a 400 in OpenAI's error shape, and after each one the ledger must be untouched: same
rows, same cost sums, the table still named usage, no forged spool segment. Legitimate SELECTs
(aggregations, the views) must still work.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from gateway.usage.parquet import ParquetSink
from gateway.usage.readonly_query import ParquetLedger
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore, QueryError
from tests.conftest import KEYS, write_relay_bundle
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import ROOT, GatewayProcess

ADMIN = {"authorization": f"Bearer {KEYS['admin']}"}
SERVED = 5  # chat completions sent before the corpus
STATE_SQL = ("SELECT count(*) AS n, sum(cost_usd) AS usd, sum(prompt_tokens) AS tokens, "
             "count(*) FILTER (WHERE request_id LIKE '%forged%') AS forged FROM usage")
TABLES_SQL = ("SELECT table_name FROM duckdb_tables() "
              "WHERE database_name NOT IN ('memory', 'temp', 'system') ORDER BY 1")
FORGED_ROW = "SELECT 'forged-1' AS request_id, now() AS started_at, 1000 AS cost_usd"

# {data}: the gateway's data directory, {spool}: its spool, {ledger}: the DuckDB file.
WRITES = {
    "explain-analyze-update": "EXPLAIN ANALYZE UPDATE usage SET cost_usd = 0",
    "explain-analyze-insert": "EXPLAIN ANALYZE INSERT INTO usage (request_id, cost_usd) VALUES ('forged-2', 1000)",
    "explain-analyze-delete": "EXPLAIN ANALYZE DELETE FROM usage",
    "explain-analyze-copy-to-spool": f"EXPLAIN ANALYZE COPY ({FORGED_ROW}) TO '{{spool}}/forged.jsonl' (FORMAT json)",
    "explain-analyze-alter": "EXPLAIN ANALYZE ALTER TABLE usage RENAME TO x",
    "explain-analyze-drop": "EXPLAIN ANALYZE DROP TABLE usage_daily",
    "explain-analyze-create": "EXPLAIN ANALYZE CREATE TABLE forged AS SELECT 1",
    "explain-analyze-lowercase": "explain   analyze\n update usage set cost_usd = 0",
    "explain-update": "EXPLAIN UPDATE usage SET cost_usd = 0",
    "explain-select": "EXPLAIN SELECT * FROM usage",
    "cte-delete": "WITH x AS (SELECT 1) DELETE FROM usage",
    "cte-update": "WITH x AS (SELECT 0 AS c) UPDATE usage SET cost_usd = (SELECT c FROM x)",
    "cte-insert": "WITH x AS (SELECT 'forged-3' AS r) INSERT INTO usage (request_id) SELECT r FROM x",
    "cte-with-delete-inside": "WITH d AS (DELETE FROM usage RETURNING *) SELECT count(*) FROM d",
    "update": "UPDATE usage SET cost_usd = 0",
    "insert": "INSERT INTO usage (request_id, cost_usd) VALUES ('forged-4', 1000)",
    "delete": "DELETE FROM usage",
    "drop": "DROP TABLE usage",
    "alter": "ALTER TABLE usage RENAME TO x",
    "create": "CREATE TABLE forged AS SELECT 1",
    "create-temp": "CREATE TEMP TABLE forged AS SELECT 1",
    "create-macro": "CREATE MACRO forged() AS 1",
    "merge": "MERGE INTO usage USING (SELECT 1 AS x) s ON false WHEN NOT MATCHED THEN INSERT (request_id) "
             "VALUES ('forged-5')",
    "truncate": "TRUNCATE usage",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM usage",
    "analyze": "ANALYZE",
    "begin": "BEGIN TRANSACTION",
    "prepare": "PREPARE p AS DELETE FROM usage",
    "pragma": "PRAGMA version",
    "pragma-table-info": "PRAGMA table_info('usage')",
    "set": "SET enable_external_access = true",
    "set-lock": "SET lock_configuration = false",
    "reset": "RESET allowed_directories",
    "call": "CALL pragma_version()",
    "call-checkpoint": "CALL checkpoint()",
    "attach": "ATTACH '{data}/other.duckdb' AS other",
    "attach-ledger": "ATTACH '{ledger}' AS again",
    "detach": "DETACH usage",
    "use": "USE memory",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "copy-to-spool": f"COPY ({FORGED_ROW}) TO '{{spool}}/forged-plain.jsonl' (FORMAT json)",
    "copy-table-to": "COPY usage TO '{data}/forged.csv'",
    "copy-from": "COPY usage FROM '/etc/passwd'",
    "export-database": "EXPORT DATABASE '{data}/forged-export'",
    "multi": "select 1; delete from usage",
    "multi-update": "SELECT count(*) FROM usage; UPDATE usage SET cost_usd = 0",
    "multi-after-line-comment": "select 1; --\ndelete from usage",
    "multi-after-block-comment": "select 1 /* ; */ ; update usage set cost_usd = 0",
    "block-comment-hides-delete": "/* SELECT */ DELETE FROM usage",
    "line-comment-hides-delete": "-- SELECT 1\nDELETE FROM usage",
    "comment-then-explain": "/* read-only */ EXPLAIN ANALYZE UPDATE usage SET cost_usd = 0",
    "query-function-delete": "SELECT * FROM query('DELETE FROM usage')",
}
READS = {
    "read-blob-ledger": "SELECT * FROM read_blob('{ledger}')",
    "read-blob-wal": "SELECT * FROM read_blob('{ledger}.wal')",
    "read-text-ledger": "SELECT length(content) FROM read_text('{ledger}')",
    "read-blob-data-dir": "SELECT filename, size FROM read_blob('{data}/*')",
    "read-blob-spool": "SELECT filename, size FROM read_blob('{spool}/*')",
    "read-json-spool": "SELECT * FROM read_json('{spool}/*.jsonl')",
    "read-text-passwd": "SELECT * FROM read_text('/etc/passwd')",
    "read-blob-environ": "SELECT * FROM read_blob('/proc/self/environ')",
    "read-csv-passwd": "SELECT * FROM read_csv('/etc/passwd')",
    "sniff-csv-passwd": "SELECT * FROM sniff_csv('/etc/passwd')",
    "read-csv-auto": "SELECT * FROM read_csv_auto('/etc/passwd')",
    "replacement-scan-file": "SELECT * FROM '/etc/passwd'",
    "read-parquet-data": "SELECT * FROM read_parquet('{data}/**/*.parquet')",
    "parquet-metadata-ledger": "SELECT * FROM parquet_metadata('{ledger}')",
    "glob-data": "SELECT * FROM glob('{data}/*')",
    "glob-spool": "SELECT * FROM glob('{spool}/*')",
    "glob-etc": "SELECT * FROM glob('/etc/*')",
    "python-replacement-scan": "SELECT * FROM os",
}
FORGED_PATHS = ("spool/forged.jsonl", "spool/forged-plain.jsonl", "other.duckdb", "forged.csv", "forged-export")


def ask(gw: GatewayProcess, sql: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/admin/usage/query", headers=ADMIN, json={"sql": sql}, timeout=30)


def rows(gw: GatewayProcess, sql: str) -> list[list[Any]]:
    r = ask(gw, sql)
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def ledger_state(gw: GatewayProcess) -> dict[str, Any]:
    [[n, usd, tokens, forged]] = rows(gw, STATE_SQL)
    spool = sorted(p.name for p in (gw.data_dir / "spool").iterdir())
    return {"n": n, "usd": usd, "tokens": tokens, "forged": forged, "tables": rows(gw, TABLES_SQL),
            "forged_files": [p for p in FORGED_PATHS if (gw.data_dir / p).exists()],
            "spool_forged": [name for name in spool if "forged" in name]}


@pytest.fixture(scope="module")
def gateway(upstreams: tuple[FakeUpstream, FakeUpstream],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("readonly")
    write_relay_bundle(root / "policies", *upstreams)
    with GatewayProcess(root / "policies", root / "data") as gw:
        h = {"authorization": f"Bearer {KEYS['client']}"}
        for _ in range(SERVED):
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers=h, json={"model": "m-a", "messages": []})
            assert r.status_code == 200
        deadline = time.monotonic() + 10
        while rows(gw, "SELECT count(*) FROM usage") != [[SERVED]] and time.monotonic() < deadline:
            time.sleep(0.1)
        before = ledger_state(gw)
        assert before["n"] == SERVED and before["usd"] == "0.000110000" and before["tables"] == [
            ["credits"], ["ledger_meta"], ["parquet_outbox"], ["redemption_codes"], ["usage"], ["usage_daily"]]
        yield gw, before


def _fill(sql: str, gw: GatewayProcess) -> str:
    data = gw.data_dir.resolve()
    return sql.format(data=data, spool=data / "spool", ledger=data / "usage.duckdb")


def _assert_openai_400(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["type"] == "invalid_request_error"
    assert "Traceback" not in error["message"]
    return str(error["message"])


def _assert_intact(gw: GatewayProcess, before: dict[str, Any]) -> None:
    # the owner ingests the spool before it answers: a segment forged there would be counted
    assert ledger_state(gw) == before


@pytest.mark.parametrize("sql", list(WRITES.values()), ids=list(WRITES))
def test_writes_are_refused_and_the_ledger_is_untouched(
    gateway: tuple[GatewayProcess, dict[str, Any]], sql: str
) -> None:
    gw, before = gateway
    _assert_openai_400(ask(gw, _fill(sql, gw)))
    _assert_intact(gw, before)


@pytest.mark.parametrize("sql", list(READS.values()), ids=list(READS))
def test_no_file_can_be_read(gateway: tuple[GatewayProcess, dict[str, Any]], sql: str) -> None:
    gw, before = gateway
    _assert_openai_400(ask(gw, _fill(sql, gw)))
    _assert_intact(gw, before)


def test_statement_errors_name_the_rule(gateway: tuple[GatewayProcess, dict[str, Any]]) -> None:
    gw, _ = gateway
    assert "EXPLAIN" in _assert_openai_400(ask(gw, "EXPLAIN ANALYZE DELETE FROM usage"))
    assert "found 2 statements" in _assert_openai_400(ask(gw, "SELECT 1; SELECT 2"))
    assert "read-only" in _assert_openai_400(ask(gw, "PRAGMA version"))
    assert "syntax" in _assert_openai_400(ask(gw, "SELEC 1")).lower()
    assert "SELECT" in _assert_openai_400(ask(gw, ""))


@pytest.mark.parametrize("body", [
    b'{"sql": "SELECT 1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"sql": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"sql": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
], ids=["deep-extra-field", "deep-sql", "deep-array", "deep-objects"])
def test_absurdly_nested_bodies_are_400(gateway: tuple[GatewayProcess, dict[str, Any]], body: bytes) -> None:
    gw, _ = gateway
    r = httpx.post(f"{gw.url}/admin/usage/query", headers={**ADMIN, "content-type": "application/json"},
                   content=body, timeout=30)
    _assert_openai_400(r)
    assert rows(gw, "SELECT 42") == [[42]]  # the worker still serves


def test_legitimate_selects_still_work(gateway: tuple[GatewayProcess, dict[str, Any]]) -> None:
    gw, before = gateway
    assert rows(gw, "SELECT key_id, count(*), sum(cost_usd) FROM usage GROUP BY ALL") == [
        ["client", SERVED, "0.000110000"]]
    assert rows(gw, "FROM usage SELECT count(*)") == [[SERVED]]
    assert rows(gw, "WITH a AS (SELECT cost_usd FROM usage) SELECT count(*) FROM a") == [[SERVED]]
    assert rows(gw, "  -- a comment first\n/* and another */ SELECT 1 AS one;  ") == [[1]]
    monthly = rows(gw, "SELECT key_id, requests, cost_usd FROM spend_by_key_month")
    assert monthly == [["client", SERVED, "0.000110000"]]
    assert rows(gw, "SELECT sum(requests) FROM usage_by_day") == [[SERVED]]
    assert rows(gw, "SELECT provider, requests FROM provider_errors") == [["up-a", SERVED]]
    assert rows(gw, "SELECT count(*) FROM usage_daily") == [[0]]
    assert rows(gw, "SELECT count(*) FROM pragma_table_info('usage') WHERE name = 'cost_usd'") == [[1]]
    r = ask(gw, "SELECT * FROM range(20000)")
    assert r.status_code == 200 and r.json()["truncated"] is True
    _assert_intact(gw, before)


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "usage", *args, "--data-dir", str(data)],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)


CLI_ATTACKS = ("explain-analyze-update", "explain-analyze-copy-to-spool", "explain-analyze-alter",
               "cte-with-delete-inside", "multi", "block-comment-hides-delete", "pragma", "set")
# An export's reader writes its file, so the local file system stays on there, limited to its
# staging directory (and the ledger file itself, which DuckDB always lets it read): not "read-blob-ledger".
CLI_READS = ("read-text-passwd", "glob-data", "read-blob-spool")


def test_cli_sql_and_export_through_the_owner(gateway: tuple[GatewayProcess, dict[str, Any]],
                                              tmp_path: Path) -> None:
    gw, before = gateway
    for name in (*CLI_ATTACKS, *CLI_READS, "read-blob-ledger"):
        sql = _fill({**WRITES, **READS}[name], gw)
        done = cli(gw.data_dir, "sql", sql)
        assert done.returncode == 1 and done.stderr.startswith("error: "), (name, done.stderr)
        assert "Traceback" not in done.stderr
    for name in (*CLI_ATTACKS, *CLI_READS):
        out = tmp_path / f"{name}.csv"
        done = cli(gw.data_dir, "export", "--format", "csv", "--out", str(out), "--sql", _fill({**WRITES, **READS}[name], gw))
        assert done.returncode == 1 and done.stderr.startswith("error: "), (name, done.stderr)
        assert "Traceback" not in done.stderr and not out.exists()
    _assert_intact(gw, before)
    assert not list((gw.data_dir / "exports").iterdir())  # no staging directory left behind
    out = tmp_path / "spend.csv"
    done = cli(gw.data_dir, "export", "--format", "csv", "--out", str(out), "--sql",
               "SELECT key_id, sum(cost_usd) AS usd FROM usage GROUP BY 1")
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == ["key_id,usd", "client,0.000110000"]
    done = cli(gw.data_dir, "sql", "SELECT count(*) AS n FROM usage", "--format", "json")
    assert json.loads(done.stdout) == [{"n": SERVED}]


def _offline_ledger(data: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    writer = SpoolWriter(data / "spool", rotate_s=0.0)
    for i in range(3):
        writer.append(UsageRecord(request_id=f"r{i}", started_at=now, finished_at=now, key_id="k",
                                  status=200, prompt_tokens=10, cost_usd=Decimal("0.5")))
    writer.close()


def test_cli_sql_without_a_gateway(tmp_path: Path) -> None:
    """No owner runs: the CLI opens the ledger itself for one call, through the same code."""
    data = tmp_path / "data"
    _offline_ledger(data)
    fill = {"data": data.resolve(), "spool": data.resolve() / "spool", "ledger": data.resolve() / "usage.duckdb"}
    for name in (*CLI_ATTACKS, *CLI_READS, "explain-analyze-delete", "cte-delete", "attach"):
        done = cli(data, "sql", {**WRITES, **READS}[name].format(**fill))
        assert done.returncode == 1 and done.stderr.startswith("error: "), (name, done.stderr)
    done = cli(data, "sql", "SELECT count(*) AS n, sum(cost_usd) AS usd FROM usage", "--format", "json")
    assert json.loads(done.stdout) == [{"n": 3, "usd": "1.500000000"}]
    con = duckdb.connect(str(data / "usage.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT count(*), sum(cost_usd) FROM usage").fetchall() == [(3, Decimal("1.5"))]
        assert ("usage",) in con.sql("SHOW TABLES").fetchall()
    finally:
        con.close()
    assert not list((data / "spool").glob("forged*"))


def test_parquet_reader_is_read_only_too(tmp_path: Path) -> None:
    """`tollgate usage sql --parquet DIR`: the same statement rule; the view must stay readable."""
    data, shared = tmp_path / "data", tmp_path / "shared"
    _offline_ledger(data)
    store = LedgerStore(data / "usage.duckdb", parquet=ParquetSink(shared, "n1", 0))
    store.ingest(ready_segments(data / "spool"))
    store.close()
    reader = ParquetLedger(shared)
    try:
        forged = shared / "node=n1" / "forged.parquet"
        for sql in (f"EXPLAIN ANALYZE COPY (SELECT 'forged' AS request_id) TO '{forged}' (FORMAT parquet)",
                    "WITH d AS (DELETE FROM usage_daily RETURNING *) SELECT count(*) FROM d",
                    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "SET lock_configuration = false",
                    f"COPY (SELECT 1) TO '{forged}'", "SELECT 1; SELECT 2", "SELECT * FROM read_text('/etc/passwd')"):
            with pytest.raises(QueryError):
                reader.query(sql)
        assert not forged.exists()
        assert reader.query("SELECT count(*), sum(cost_usd) FROM usage")["rows"] == [[3, "1.500000000"]]
    finally:
        reader.close()
