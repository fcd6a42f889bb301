"""The DuckDB schema of the usage ledger. `schemas/usage.sql` is this text (a test checks it)."""

from __future__ import annotations

# column -> DuckDB type, in UsageRecord field order (the spool is ingested with these types)
COLUMNS: dict[str, str] = {
    "request_id": "VARCHAR",
    "started_at": "TIMESTAMPTZ",
    "finished_at": "TIMESTAMPTZ",
    "key_id": "VARCHAR",
    "group": "VARCHAR",
    "tags": "VARCHAR[]",
    "endpoint": "VARCHAR",
    "requested_model": "VARCHAR",
    "served_model": "VARCHAR",
    "provider": "VARCHAR",
    "attempts": "INTEGER",
    "status": "INTEGER",
    "error_type": "VARCHAR",
    "stream": "BOOLEAN",
    "cancelled": "BOOLEAN",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "cached_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "images": "INTEGER",
    "audio_seconds": "DOUBLE",
    "cost_usd": "DECIMAL(18,9)",
    "usage_source": "VARCHAR",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "policy_revision": "VARCHAR",
    "session_id": "VARCHAR",
}

_COMMENTS = {
    "request_id": "x-request-id of the request (refund rows: <request_id>-refund)",
    "group": "the key's group at the time of the request",
    "tags": "the key's tags plus tags added by rules",
    "requested_model": "what the client asked for (alias or model)",
    "served_model": "the model name sent upstream",
    "attempts": "upstream attempts (retries and fallbacks included)",
    "status": "HTTP status returned to the client (499: client went away)",
    "error_type": "NULL when served cleanly; the error code, client_cancelled, "
                  "upstream_stream_cut:<exc> or upstream_stream_error:<type> (after a 200)",
    "cancelled": "the client disconnected before the end",
    "prompt_tokens": "all input tokens, cache reads and writes included",
    "cached_tokens": "cache reads (part of prompt_tokens)",
    "cache_write_tokens": "cache writes (part of prompt_tokens)",
    "reasoning_tokens": "part of completion_tokens",
    "cost_usd": "exact price; NULL when no price is known (lenient pricing)",
    "usage_source": "upstream | estimated (stream cut without a usage chunk) | none",
    "policy_revision": "revision of the policy bundle that priced the request",
    "session_id": "Realtime API session (one row per response in it); NULL otherwise",
}


def _table() -> str:
    width = max(len(f'"{c}"') for c in COLUMNS)
    lines = []
    for i, (name, kind) in enumerate(COLUMNS.items()):
        comma = "," if i < len(COLUMNS) - 1 else ""
        comment = f"  -- {_COMMENTS[name]}" if name in _COMMENTS else ""
        lines.append(f"    {f'{chr(34)}{name}{chr(34)}':<{width}} {kind}{comma}{comment}")
    return "CREATE TABLE IF NOT EXISTS usage (\n" + "\n".join(lines) + "\n);\n"


USAGE_DAILY = """CREATE TABLE IF NOT EXISTS usage_daily (
    day DATE, key_id VARCHAR, "group" VARCHAR, provider VARCHAR, served_model VARCHAR,
    requests BIGINT, errors BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT,
    cached_tokens BIGINT, cost_usd DECIMAL(18,9)
);
"""

TABLES = (
    "-- Tollgate usage ledger (DuckDB). One row per request: served, denied, failed or cancelled.\n"
    "-- Generated from gateway/usage/schema.py; `tollgate usage schema` rewrites this file.\n"
    "-- Days and months in the views are UTC (for another zone: timezone('Europe/Paris', started_at)).\n\n"
    + _table()
    + """
-- Rows older than settings.usage.retention_days are folded in here, then deleted from usage.
"""
    + USAGE_DAILY
)

VIEWS = """
-- Recent rows and retained daily totals as one relation, per UTC day (make_timestamp(epoch_us())
-- is the UTC wall clock without a time-zone lookup per row: 3x faster over millions of rows).
CREATE OR REPLACE VIEW usage_by_day AS
SELECT CAST(make_timestamp(epoch_us(started_at)) AS DATE) AS day, key_id, "group", provider,
       served_model, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd
FROM usage GROUP BY ALL
UNION ALL
SELECT * FROM usage_daily;

CREATE OR REPLACE VIEW spend_by_key_month AS
SELECT key_id, CAST(date_trunc('month', day) AS DATE) AS month, sum(requests) AS requests,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cost_usd) AS cost_usd
FROM usage_by_day GROUP BY ALL ORDER BY month, key_id;

CREATE OR REPLACE VIEW spend_by_model_day AS
SELECT served_model, provider, day, sum(requests) AS requests,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cost_usd) AS cost_usd
FROM usage_by_day GROUP BY ALL ORDER BY day, served_model, provider;

CREATE OR REPLACE VIEW provider_errors AS
SELECT provider, count(*) AS requests, count(*) FILTER (WHERE status >= 500) AS server_errors,
       count(*) FILTER (WHERE status >= 400) AS errors,
       round(count(*) FILTER (WHERE status >= 400) / count(*), 4) AS error_rate
FROM usage WHERE provider IS NOT NULL GROUP BY ALL ORDER BY provider;

CREATE OR REPLACE VIEW provider_latency AS
SELECT provider, count(*) AS requests,
       quantile_cont(latency_ms, 0.5) AS latency_p50_ms, quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
       quantile_cont(ttft_ms, 0.5) AS ttft_p50_ms, quantile_cont(ttft_ms, 0.95) AS ttft_p95_ms
FROM usage WHERE provider IS NOT NULL AND status < 400 GROUP BY ALL ORDER BY provider;
"""

DDL = TABLES + VIEWS
