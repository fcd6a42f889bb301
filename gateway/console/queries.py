"""The console's SQL: fixed statements, every filter value a bound parameter (never SQL text
built from a request). Each builder returns (sql, params) for the owner's `queries` op.

Time buckets are integer epoch arithmetic (no time-zone lookup per row) and land as the Unix
seconds uPlot plots; quantiles are `approx_quantile` (t-digest: one pass, bounded memory)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .filters import Filter

Query = tuple[str, list[Any]]

# $1 since, $2 until, $3 key, $4 group, $5 model, $6 provider, $7 status (any | ok | error).
# The time bounds stay bare parameters: DuckDB then types them from the column and skips row groups
# by their min/max (`CAST($1 AS TIMESTAMPTZ)` scans every row: 10x slower on a 1M-row ledger).
WHERE = """started_at >= $1 AND started_at < $2
  AND ($3::VARCHAR IS NULL OR key_id = $3) AND ($4::VARCHAR IS NULL OR "group" = $4)
  AND ($5::VARCHAR IS NULL OR served_model = $5 OR requested_model = $5)
  AND ($6::VARCHAR IS NULL OR provider = $6)
  AND ($7 = 'any' OR ($7 = 'error') = (status >= 400))"""
NEXT = 8  # the first parameter number after the filter's

_DIMENSION = """CASE $9 WHEN 'key' THEN key_id WHEN 'group' THEN "group"
  WHEN 'provider' THEN provider ELSE served_model END"""
BUCKET_S = {"hour": 3600, "day": 86400}

USAGE_COLUMNS = ("started_at", "request_id", "key_id", "group", "endpoint", "requested_model",
                 "served_model", "provider", "status", "error_type", "prompt_tokens",
                 "completion_tokens", "cost_usd", "latency_ms")
_TABLE_COLUMNS = ", ".join(f'"{c}"' for c in USAGE_COLUMNS)


def params(f: Filter) -> list[Any]:
    return [f.since.isoformat(), f.until.isoformat(), f.key, f.group, f.model, f.provider, f.status]


def series(f: Filter) -> Query:
    """Requests, spend and tokens per time bucket and value of the `by` dimension."""
    sql = f"""SELECT (epoch(started_at)::BIGINT // $8) * $8 AS t, {_DIMENSION} AS dim,
  count(*) AS requests, coalesce(sum(cost_usd), 0)::DOUBLE AS cost,
  coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens
FROM usage WHERE {WHERE} GROUP BY ALL ORDER BY 1"""
    return sql, [*params(f), BUCKET_S[f.bucket], f.by]


def top(f: Filter, column: str, limit: int = 10) -> Query:
    """Top keys (`column` "key") or models ("model") by spend, then requests."""
    name = {"key": "key_id", "model": "served_model"}[column]  # our two columns, not user text
    sql = f"""SELECT {name} AS name, count(*) AS requests,
  coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens, sum(cost_usd)::DOUBLE AS cost
FROM usage WHERE {WHERE} GROUP BY 1 ORDER BY cost DESC NULLS LAST, requests DESC LIMIT $8"""
    return sql, [*params(f), limit]


def providers(f: Filter) -> Query:
    sql = f"""SELECT provider, count(*) AS requests,
  count(*) FILTER (WHERE status >= 400) / count(*) AS error_rate
FROM usage WHERE {WHERE} AND provider IS NOT NULL GROUP BY 1 ORDER BY 1"""
    return sql, params(f)


# Latency percentiles sort what they read: over millions of rows they read a sample of the
# table's vectors instead (DuckDB's system sampling skips the rest), picked by the rows in range.
SAMPLES = ((400_000, ""), (4_000_000, "TABLESAMPLE 10%"), (None, "TABLESAMPLE 1%"))


def sample_for(rows: int) -> str:
    return next(clause for bound, clause in SAMPLES if bound is None or rows <= bound)


def latency(f: Filter, rows: int) -> Query:
    """p50 / p95 latency of successful requests per provider; exact up to 400k rows in range."""
    sql = f"""SELECT provider, quantile_cont(latency_ms, [0.5, 0.95]) AS q
FROM usage {sample_for(rows)} WHERE {WHERE} AND provider IS NOT NULL AND status < 400 GROUP BY 1"""
    return sql, params(f)


def last_errors(f: Filter, per_provider: int = 3) -> Query:
    sql = f"""SELECT provider, started_at, status, error_type FROM usage
WHERE {WHERE} AND provider IS NOT NULL AND status >= 500
QUALIFY row_number() OVER (PARTITION BY provider ORDER BY started_at DESC) <= $8
ORDER BY provider, started_at DESC"""
    return sql, [*params(f), per_provider]


def spend(starts: list[dt.datetime]) -> Query:
    """Spend per key and group since each of `starts` (budget periods' starts), retained days
    included, in one scan from the earliest: column `s<i>` is the spend since `starts[i]`."""
    windows = ", ".join(f"sum(cost_usd) FILTER (WHERE started_at >= ${i + 2})::DOUBLE AS s{i}"
                        for i in range(len(starts)))
    daily = ", ".join(f"sum(cost_usd) FILTER (WHERE day >= {_day(i + 2)})::DOUBLE"
                      for i in range(len(starts)))
    sums = ", ".join(f"sum(s{i}) AS s{i}" for i in range(len(starts)))
    sql = f"""SELECT key_id, "group", {sums} FROM (
  SELECT key_id, "group", {windows} FROM usage WHERE started_at >= $1 GROUP BY ALL
  UNION ALL
  SELECT key_id, "group", {daily} FROM usage_daily WHERE day >= {_day(1)} GROUP BY ALL
) GROUP BY ALL"""
    earliest = min(starts)
    return sql, [earliest.isoformat(), *(s.isoformat() for s in starts)]


def _day(n: int) -> str:
    """Parameter `n` (a time) as its UTC date, for usage_daily's days."""
    return f"CAST(CAST(${n} AS TIMESTAMPTZ) AS DATE)"


def last_minute(now: dt.datetime, key: str | None = None) -> Query:
    """Requests and tokens per key in the last 60 s (against rpm / tpm)."""
    sql = """SELECT key_id, count(*) AS requests,
  coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens
FROM usage WHERE started_at >= $1 AND ($2::VARCHAR IS NULL OR key_id = $2)
GROUP BY 1"""
    return sql, [(now - dt.timedelta(seconds=60)).isoformat(), key]


def rows(f: Filter) -> Query:
    sql = f"""SELECT {_TABLE_COLUMNS} FROM usage WHERE {WHERE}
ORDER BY started_at DESC, request_id LIMIT $8"""
    return sql, [*params(f), f.limit]


def totals(f: Filter) -> Query:
    sql = f"""SELECT count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
  coalesce(sum(prompt_tokens), 0) AS prompt_tokens, coalesce(sum(completion_tokens), 0) AS completion_tokens,
  sum(cost_usd)::DOUBLE AS cost FROM usage WHERE {WHERE}"""
    return sql, params(f)


def export(f: Filter) -> Query:
    """Every column of every row the filter selects: what the CSV/Parquet download holds."""
    return f"SELECT * FROM usage WHERE {WHERE} ORDER BY started_at, request_id", params(f)


def has_balances() -> Query:
    """Whether the ledger has the prepaid-credits `balances` view (added with credits)."""
    return ("SELECT count(*) FROM duckdb_views() WHERE view_name = 'balances' AND NOT internal", [])


def has_tasks() -> Query:
    """Whether the ledger has the `tasks` view (asynchronous tasks: videos, Suno, Midjourney)."""
    return ("SELECT count(*) FROM duckdb_views() WHERE view_name = 'tasks' AND NOT internal", [])


def tasks(f: Filter, key: str | None, limit: int = 20) -> Query:
    """The newest tasks submitted in the filter's range (of one key, or all): status, duration and
    cost from the `tasks` view (usage/schema.py: a task's submit, refund and end rows)."""
    sql = """SELECT task_id, key_id, endpoint, coalesce(served_model, requested_model) AS model, provider,
  status, submitted_at, finished_at, duration_s, charged_usd::DOUBLE AS charged,
  refunded_usd::DOUBLE AS refunded, cost_usd::DOUBLE AS cost
FROM tasks WHERE submitted_at >= $1 AND submitted_at < $2 AND ($3::VARCHAR IS NULL OR key_id = $3)
ORDER BY submitted_at DESC, task_id LIMIT $4"""
    return sql, [f.since.isoformat(), f.until.isoformat(), key, limit]
