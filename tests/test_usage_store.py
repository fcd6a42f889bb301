"""The DuckDB ledger file: schema, views, retention rollup, spend, read-only and bounded queries."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gateway.usage.ledger import Ledger
from gateway.usage.record import UsageRecord
from gateway.usage.schema import COLUMNS
from gateway.usage.spool import SpoolWriter, ready_segments
from gateway.usage.store import LedgerStore, QueryError

NOW = dt.datetime.now(dt.UTC)


def row(rid: str, when: dt.datetime = NOW, **fields: object) -> UsageRecord:
    base: dict[str, object] = {"key_id": "k", "group": "g", "provider": "p", "served_model": "m", "status": 200,
                               "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": Decimal("0.25")}
    base.update(fields)
    return UsageRecord(request_id=rid, started_at=when, finished_at=when, **base)  # type: ignore[arg-type]


def load(tmp_path: Path, rows: list[UsageRecord]) -> LedgerStore:
    writer = SpoolWriter(tmp_path / "spool")
    for r in rows:
        writer.append(r)
    writer.close()
    store = LedgerStore(tmp_path / "usage.duckdb")
    assert store.ingest(ready_segments(tmp_path / "spool")) == len(rows)
    return store


def test_columns_follow_the_record() -> None:
    assert list(COLUMNS) == list(UsageRecord.__struct_fields__)


def test_views_errors_and_latency_percentiles(tmp_path: Path) -> None:
    rows = [row(f"ok{i}", latency_ms=float(i), ttft_ms=float(i) / 10) for i in range(1, 101)]
    rows += [row("e1", status=502, provider="p"), row("e2", status=429, provider="p")]
    store = load(tmp_path, rows)
    errors = store.query("SELECT provider, requests, server_errors, errors, error_rate FROM provider_errors")
    assert errors["rows"] == [["p", 102, 1, 2, 0.0196]]
    latency = store.query("SELECT latency_p50_ms, latency_p95_ms, ttft_p50_ms, ttft_p95_ms FROM provider_latency")
    assert latency["rows"] == [[50.5, 95.05, pytest.approx(5.05), pytest.approx(9.505)]]
    month = store.query("SELECT key_id, requests, cost_usd FROM spend_by_key_month")["rows"]
    assert month == [["k", 102, "25.500000000"]]
    day = store.query("SELECT served_model, provider, day, requests FROM spend_by_model_day")["rows"]
    assert day == [["m", "p", NOW.date().isoformat(), 102]]


def test_retention_folds_old_rows_into_daily_totals(tmp_path: Path) -> None:
    old = NOW - dt.timedelta(days=40)
    rows = [row(f"old{i}", when=old, completion_tokens=i) for i in range(4)]
    rows += [row("old-err", when=old, status=500, cost_usd=None), row("new")]
    store = load(tmp_path, rows)
    before = store.query("SELECT * FROM spend_by_key_month ORDER BY month")["rows"]
    spent = store.spend_since("key", "k", old - dt.timedelta(days=1))
    assert store.apply_retention(30) == 5
    assert store.query("SELECT request_id FROM usage")["rows"] == [["new"]]
    daily = store.query("SELECT day, key_id, requests, errors, completion_tokens, cost_usd FROM usage_daily")
    assert daily["rows"] == [[old.date().isoformat(), "k", 5, 1, 0 + 1 + 2 + 3 + 5, "1.000000000"]]
    # the views and the budget's spend still see the folded totals
    assert store.query("SELECT * FROM spend_by_key_month ORDER BY month")["rows"] == before
    assert store.spend_since("key", "k", old - dt.timedelta(days=1)) == spent == Decimal("1.25")
    assert store.spend_since("group", "g", NOW - dt.timedelta(days=1)) == Decimal("0.25")
    assert store.apply_retention(30) == 0 and store.apply_retention(None) == 0


def test_the_owner_applies_retention_when_it_starts(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    writer.append(row("ancient", when=NOW - dt.timedelta(days=400)))
    writer.append(row("recent"))
    writer.close()

    async def run() -> dict[str, object]:
        ledger = Ledger(tmp_path, retention_days=lambda: 365)
        await ledger.start()
        try:
            assert ledger.owner is not None
            return await ledger.query("SELECT (SELECT count(*) FROM usage), (SELECT sum(requests) FROM usage_daily)")
        finally:
            await ledger.close()

    assert asyncio.run(run())["rows"] == [[1, 1]]


def test_only_one_read_only_statement(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "usage.duckdb")
    for sql in ("DELETE FROM usage", "DROP TABLE usage", "SELECT 1; DELETE FROM usage", "INSTALL httpfs",
                "COPY usage TO 'x.csv'", "ATTACH 'other.db'", "SET enable_external_access = true", "PRAGMA version"):
        with pytest.raises(QueryError):
            store.query(sql)
    with pytest.raises(QueryError, match="disabled by configuration"):
        store.query("SELECT * FROM read_text('/etc/hostname')")
    assert store.query("WITH a AS (SELECT 1 AS x) SELECT x FROM a")["rows"] == [[1]]
    big = store.query("SELECT * FROM range(20)", limit=5)
    assert len(big["rows"]) == 5 and big["truncated"] is True


def test_a_runaway_query_is_cancelled(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "usage.duckdb", query_timeout_s=0.2)
    with pytest.raises(QueryError, match="cancelled"):
        store.query("SELECT sum(hash(i)) FROM range(100000000000) t(i)")
    assert store.query("SELECT 42")["rows"] == [[42]]


def test_a_ledger_file_from_an_older_release_gets_the_new_columns(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "usage.duckdb"))
    con.execute("CREATE TABLE usage (request_id VARCHAR, started_at TIMESTAMPTZ, cost_usd DECIMAL(18,9))")
    con.execute("INSERT INTO usage VALUES ('legacy', now(), 1)")
    con.close()
    store = load(tmp_path, [row("current", ttft_ms=3.0)])
    got = store.query("SELECT request_id, ttft_ms FROM usage ORDER BY 1")["rows"]
    assert got == [["current", 3.0], ["legacy", None]]
