"""`tollgate diff --replay`: a generated ledger re-priced under NEW, compared with an independent
integer SQL computation (per key, group, model and in total), row by row with the relay's
`compute_cost`, and the requests NEW would deny or route elsewhere counted by hand. The ledger
is read through a running ledger owner as well as by taking ownership for the call."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from benchmarks.bench_replay import make_ledger
from gateway.billing.pricing import NANO, compute_cost
from gateway.cli import main
from gateway.config import Snapshot, load_snapshot
from gateway.core.usage import TokenUsage
from gateway.diff.replay import key_multiplier, owner_query, parquet_query, price_table, replay
from gateway.diff.replay_sql import priced_rows_sql
from gateway.usage.lock import socket_path, try_lock

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
ROWS, SPAN_DAYS, DAYS = 4000, 60, 30


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("ledger")
    make_ledger(data / "usage.duckdb", ROWS, SPAN_DAYS, NOW)
    return data


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prices variant, plus a tiered price (priced in Python) and a rate whose single
    tokens cost half a nano-dollar (ties, rounded to even)."""
    new = tmp_path_factory.mktemp("new") / "policies"
    shutil.copytree(FIXTURES / "prices", new)
    text = (new / "providers.toml").read_text()
    text = text.replace("[price.claude-3]\ninput = 3.0", "[price.claude-3]\ninput = 0.0015")
    text = text.replace("cache_write = 0.2", 'cache_write = 0.2\ntiers = [{ when = "tokens.prompt > 4000", input = 0.3 }]')
    (new / "providers.toml").write_text(text)
    return new


# The independent computation: rates x 10^4 and multipliers x 10, so that a row's cost in
# nano-dollars is (sum of tokens x rate x multiplier) / 100, rounded half to even by hand.
RATES_X10K = {  # input, cached input, cache write, output, reasoning
    "gpt-4o": (30000, 12500, 30000, 120000, 120000),
    "gpt-4o-mini": (1000, 1000, 2000, 6000, 6000),
    "gpt-4o-mini-tier": (3000, 3000, 2000, 6000, 6000),  # prompt > 4000
    "claude-3": (15, 15, 15, 150000, 150000),
}


def _case(i: int) -> str:
    mini = f"CASE WHEN prompt_tokens > 4000 THEN {RATES_X10K['gpt-4o-mini-tier'][i]} ELSE {RATES_X10K['gpt-4o-mini'][i]} END"
    return (f"CAST(CASE served_model WHEN 'gpt-4o' THEN {RATES_X10K['gpt-4o'][i]} WHEN 'gpt-4o-mini' THEN {mini} "
            f"WHEN 'claude-3' THEN {RATES_X10K['claude-3'][i]} END AS HUGEINT)")


INDEPENDENT = f"""
WITH n AS (
  SELECT key_id, "group", served_model, cost_usd, usage_source,
    (CAST(greatest(prompt_tokens - cached_tokens - cache_write_tokens, 0) AS HUGEINT) * {_case(0)}
     + cached_tokens * {_case(1)} + cache_write_tokens * {_case(2)}
     + greatest(completion_tokens - reasoning_tokens, 0) * {_case(3)} + reasoning_tokens * {_case(4)})
    * CASE key_id WHEN 'carol' THEN 12 ELSE 10 END AS units
  FROM usage WHERE started_at >= TIMESTAMPTZ '{(NOW - dt.timedelta(days=DAYS)).isoformat()}'
), r AS (
  SELECT *, units // 100 AS q, units % 100 AS rem FROM n
)
SELECT grouping(key_id, "group", served_model) AS level, key_id, "group", served_model, count(*) AS requests,
       sum(cost_usd) AS old_cost,
       sum(CASE WHEN usage_source = 'none' THEN 0
                ELSE q + CASE WHEN rem > 50 OR (rem = 50 AND q % 2 = 1) THEN 1 ELSE 0 END END) AS nanos
FROM r GROUP BY GROUPING SETS ((key_id), ("group"), (served_model), ())
"""


def test_replay_equals_independent_sql(ledger: Path, new_bundle: Path) -> None:
    old, new = load_snapshot(FIXTURES / "base"), load_snapshot(new_bundle)
    result = replay(old, new, owner_query(ledger), DAYS, NOW)
    con = duckdb.connect(str(ledger / "usage.duckdb"), read_only=True)
    try:
        expected = con.execute(INDEPENDENT).fetchall()
    finally:
        con.close()
    checked = 0
    for level, key, group, model, requests, old_cost, nanos in expected:
        bucket = {7: result.total, 3: result.by_key.get(key or "(none)"), 5: result.by_group.get(group or "(none)"),
                  6: result.by_model.get(model or "(none)")}[level]
        assert bucket is not None, (level, key, group, model)
        assert bucket.requests == requests
        assert bucket.old == (old_cost or 0)
        assert bucket.new == Decimal(nanos).scaleb(-9), (level, key, group, model)
        checked += 1
    assert checked == 1 + 5 + 3 + 3  # total, keys, groups (team, research, none), served models
    assert 0 < result.total.requests < ROWS  # the period is half of the ledger's span
    assert result.unpriced == 0


def _usage(row: dict[str, object]) -> TokenUsage:
    return TokenUsage(prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],  # type: ignore[arg-type]
                      cached_tokens=row["cached_tokens"], cache_write_tokens=row["cache_write_tokens"],  # type: ignore[arg-type]
                      reasoning_tokens=row["reasoning_tokens"], images=row["images"],  # type: ignore[arg-type]
                      audio_seconds=row["audio_seconds"], source="upstream")  # type: ignore[arg-type]


def _per_row(ledger: Path, old: Snapshot, new: Snapshot) -> list[dict[str, object]]:
    since = (NOW - dt.timedelta(days=DAYS)).isoformat()
    sql = (f"WITH p AS ({priced_rows_sql(price_table(old, new), since)}) "
           f"SELECT p.new_nanos, p.in_python, p.carried, p.priced, u.* FROM p JOIN usage u USING (request_id)")
    con = duckdb.connect(str(ledger / "usage.duckdb"), read_only=True)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    finally:
        con.close()


def test_every_row_priced_by_sql_equals_compute_cost(ledger: Path, new_bundle: Path) -> None:
    old, new = load_snapshot(FIXTURES / "base"), load_snapshot(new_bundle)
    rows = _per_row(ledger, old, new)
    in_sql = ties = 0
    for row in rows:
        if not row["priced"]:
            assert row["new_nanos"] is None
            continue
        price = new.price_for(str(row["provider"]), str(row["served_model"]))
        expected = compute_cost(price, _usage(row), key_multiplier(old, new, str(row["key_id"])))
        assert expected is not None
        if row["in_python"]:
            assert row["served_model"] == "gpt-4o-mini" and row["new_nanos"] is None  # the tiered price
            continue
        assert Decimal(int(row["new_nanos"])).scaleb(-9) == expected, row  # type: ignore[call-overload]
        in_sql += 1
        unrounded = compute_cost(price, _usage(row), 1.0) if row["key_id"] != "carol" else None
        if unrounded is not None and expected != _half_up(price, row):
            ties += 1
    assert in_sql > len(rows) // 2
    assert ties > 0, "no half-nano tie was exercised"


def _half_up(price: object, row: dict[str, object]) -> Decimal:
    """The same cost rounded half up: differs from the relay's only on a tie."""
    u = _usage(row)
    rates = price.rates  # type: ignore[attr-defined]
    exact = (max(u.prompt_tokens - u.cached_tokens - u.cache_write_tokens, 0) * Decimal(repr(rates.input))
             + u.cached_tokens * Decimal(repr(rates.cached_input or rates.input))
             + u.cache_write_tokens * Decimal(repr(rates.cache_write or rates.input))
             + max(u.completion_tokens - u.reasoning_tokens, 0) * Decimal(repr(rates.output))
             + u.reasoning_tokens * Decimal(repr(rates.reasoning or rates.output))) / Decimal(1_000_000)
    return exact.quantize(NANO, rounding=ROUND_HALF_UP)


def _served(ledger: Path, where: str) -> dict[str, int]:
    con = duckdb.connect(str(ledger / "usage.duckdb"), read_only=True)
    try:
        rows = con.execute(
            f"SELECT key_id, count(*) FROM usage WHERE status < 400 AND started_at >= ? AND ({where}) GROUP BY 1",
            [NOW - dt.timedelta(days=DAYS)]).fetchall()
    finally:
        con.close()
    return {k: n for k, n in rows}


def test_denied_and_rerouted_requests(ledger: Path) -> None:
    base = load_snapshot(FIXTURES / "base")
    keys = replay(base, load_snapshot(FIXTURES / "keys"), owner_query(ledger), DAYS, NOW)
    # dave removed, bob disabled, carol expired; ghost was never a key of either side; the
    # generated ledger also has alice (team) served on claude-3, outside the team allow-list
    expected = _served(ledger, "key_id IN ('dave', 'bob', 'carol', 'ghost')")
    alice = _served(ledger, "key_id = 'alice' AND requested_model = 'claude-3'")["alice"]
    assert keys.denied == {**expected, "alice": alice}
    reasons: dict[str, int] = defaultdict(int)
    for key, why in (("dave", "key removed"), ("bob", "key disabled"), ("carol", "key expired"),
                     ("ghost", "key removed")):
        reasons[why] += expected[key]
    assert keys.denied_reasons == {**reasons, "model not allowed": alice}  # the allow-list comes first
    # OLD refuses some of them as well: ghost, dave outside claude-*, the team on claude-3
    by_old = _served(ledger, "key_id = 'ghost' OR (key_id = 'dave' AND requested_model <> 'claude-3') "
                             "OR (key_id IN ('alice', 'bob') AND requested_model = 'claude-3')")
    assert keys.denied_by_old == sum(by_old.values())
    assert keys.rerouted == {}
    # the backup provider is gone: what it served of gpt-4o goes elsewhere
    moved = replay(base, load_snapshot(FIXTURES / "providers"), owner_query(ledger), DAYS, NOW)
    backup = sum(_served(ledger, "provider = 'backup' AND key_id <> 'ghost' AND key_id <> 'dave'").values())
    assert moved.rerouted == {"gpt-4o": backup} and backup > 0


def test_replay_through_a_running_owner_and_the_cli(ledger: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A gateway holds the ledger: the replay asks its owner over the socket."""
    data = tmp_path / "data"
    shutil.copytree(ledger, data)
    owner = subprocess.Popen([sys.executable, "-m", "gateway.usage.ingester", "--data-dir", str(data),
                              "--policies", str(FIXTURES / "base"), "--no-parquet"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not Path(socket_path(data)).exists():
            assert owner.poll() is None and time.monotonic() < deadline, "the owner did not start"
            time.sleep(0.05)
        assert try_lock(data) is None  # the ledger is the running owner's: the CLI must ask it
        code = main(["diff", str(FIXTURES / "base"), str(FIXTURES / "prices"), "--replay", "3650",
                     "--data-dir", str(data), "--format", "markdown"])
        out = capsys.readouterr().out
        assert code == 2
        first = out.splitlines()[0]
        assert re.fullmatch(r"\*\*2 price changes; 1 group change; spend -\d+\.\d% \(-\$\d+\.\d\d\) on last "
                            r"3650 days; \d+ requests of 4 keys would be denied \(\d+ by OLD too\)\*\*", first), first
        assert f"| total | {ROWS} |" in out
        assert owner.poll() is None
        with pytest.raises(duckdb.Error):  # it answered from the file it now holds
            duckdb.connect(str(data / "usage.duckdb")).close()
    finally:
        owner.terminate()
        owner.wait(timeout=30)


def test_no_ledger_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", str(FIXTURES / "base"), str(FIXTURES / "prices"), "--replay", "30",
                 "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "no ledger at" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def with_tasks(ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledger plus a task's rows (billed per second of video, then partly refunded), and the
    same rows as one node's Parquet file under `<dir>/parquet`."""
    tmp_path = tmp_path_factory.mktemp("tasks")
    data = tmp_path / "data"
    shutil.copytree(ledger, data)
    con = duckdb.connect(str(data / "usage.duckdb"))
    con.execute("ALTER TABLE usage ADD COLUMN IF NOT EXISTS task_id VARCHAR")
    for request_id, cost in (("task-1", "1.250000000"), ("task-1-refund", "-0.250000000")):
        con.execute(
            "INSERT INTO usage (request_id, started_at, finished_at, key_id, endpoint, requested_model, "
            "served_model, provider, status, usage_source, cost_usd, task_id) VALUES "
            "(?, ?, ?, 'alice', '/v1/videos', 'gpt-4o', 'gpt-4o', 'mock', 200, 'upstream', ?, 'task-1')",
            [request_id, NOW, NOW, cost])
    parquet = tmp_path / "parquet" / "node=n1" / "date=2026-11-30"
    parquet.mkdir(parents=True)
    con.execute(f"COPY usage TO '{parquet / 'part-0.parquet'}' (FORMAT parquet)")
    con.close()
    return tmp_path


def test_task_rows_keep_their_cost(ledger: Path, with_tasks: Path) -> None:
    """Rows billed per action or per second (tasks, their refunds) are not token-priced."""
    old, new = load_snapshot(FIXTURES / "base"), load_snapshot(FIXTURES / "prices")
    plain = replay(old, new, owner_query(ledger), DAYS, NOW)
    tasks = replay(old, new, owner_query(with_tasks / "data"), DAYS, NOW)
    assert tasks.by_key["alice"].old - plain.by_key["alice"].old == Decimal("1.000000000")
    assert tasks.by_key["alice"].new - plain.by_key["alice"].new == Decimal("1.000000000")


def test_parquet_replays_the_same(with_tasks: Path) -> None:
    """The nodes' Parquet files replay to the same figures as the ledger they came from."""
    old, new = load_snapshot(FIXTURES / "base"), load_snapshot(FIXTURES / "prices")
    from_ledger = replay(old, new, owner_query(with_tasks / "data"), DAYS, NOW)
    query, close = parquet_query(with_tasks / "parquet")
    try:
        from_parquet = replay(old, new, query, DAYS, NOW)
    finally:
        close()
    assert from_parquet.total == from_ledger.total and from_parquet.by_key == from_ledger.by_key
    assert from_parquet.denied == from_ledger.denied
