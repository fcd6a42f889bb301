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
    "task_id": "VARCHAR",
    "affinity_key": "VARCHAR",
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
    "task_id": "asynchronous tasks (videos, Suno, Midjourney): the task of a submit, refund or end row",
    "affinity_key": "hash (sha256, 16 hex) of the alias's affinity value; NULL without affinity",
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

# Money movements of prepaid keys (docs/credits.md): balance = sum(credits) - sum(usage cost).
# Written only by the ledger owner (usage/credits_store.py), each entry checkpointed before the
# API answers. `reference` is unique: a top-up posted twice, or a code redeemed twice, is one row.
CREDITS = """
-- Prepaid credit entries: top-ups, redeemed codes, adjustments and refunds (amount < 0 debits).
CREATE SEQUENCE IF NOT EXISTS credit_ids START 1;
CREATE TABLE IF NOT EXISTS credits (
    id              BIGINT PRIMARY KEY DEFAULT nextval('credit_ids'),
    key_id          VARCHAR NOT NULL,
    amount_usd      DECIMAL(18,9) NOT NULL,
    kind            VARCHAR NOT NULL CHECK (kind IN ('topup', 'redeem', 'adjust', 'refund')),
    reference       VARCHAR UNIQUE,  -- idempotency: client-given, or code:<hash> for a redemption
    note            VARCHAR,
    actor           VARCHAR,  -- admin key id, cli:<user>, or the redeeming key
    created_at      TIMESTAMPTZ NOT NULL,
    policy_revision VARCHAR
);

-- Redemption codes: only their SHA-256 is kept; a code is used when a credits row has
-- reference = 'code:' || code_hash.
CREATE TABLE IF NOT EXISTS redemption_codes (
    code_hash  VARCHAR PRIMARY KEY,
    amount_usd DECIMAL(18,9) NOT NULL,
    batch      VARCHAR NOT NULL,
    group_id   VARCHAR,  -- redeemable only by keys of this group (NULL: any key)
    expires_at TIMESTAMPTZ,
    note       VARCHAR,
    created_by VARCHAR,
    created_at TIMESTAMPTZ NOT NULL
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
    + CREDITS
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

-- Prompt-cache hits per affinity key (aliases with `affinity`): the share of prompt tokens read
-- from the provider's cache, per hashed affinity value and provider.
CREATE OR REPLACE VIEW cache_hits_by_affinity AS
SELECT affinity_key, provider, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(cached_tokens) AS cached_tokens,
       round(sum(cached_tokens) / nullif(sum(prompt_tokens), 0), 4) AS cache_hit_rate
FROM usage WHERE affinity_key IS NOT NULL GROUP BY ALL ORDER BY requests DESC, affinity_key;

CREATE OR REPLACE VIEW provider_latency AS
SELECT provider, count(*) AS requests,
       quantile_cont(latency_ms, 0.5) AS latency_p50_ms, quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
       quantile_cont(ttft_ms, 0.5) AS ttft_p50_ms, quantile_cont(ttft_ms, 0.95) AS ttft_p95_ms
FROM usage WHERE provider IS NOT NULL AND status < 400 GROUP BY ALL ORDER BY provider;

-- One row per asynchronous task (videos, Suno, Midjourney): its submit row, its refund row
-- (<request_id>-refund) when it failed and was charged, its end row (<request_id>-done).
CREATE OR REPLACE VIEW tasks AS
SELECT task_id,
       arg_min(key_id, started_at) AS key_id, arg_min(endpoint, started_at) AS endpoint,
       arg_min(requested_model, started_at) AS requested_model,
       arg_min(served_model, started_at) AS served_model, arg_min(provider, started_at) AS provider,
       CASE WHEN bool_or(error_type = 'task_failed') THEN 'failed'
            WHEN bool_or(error_type = 'task_succeeded') THEN 'succeeded'
            WHEN bool_or(request_id LIKE '%-refund') THEN 'failed' ELSE 'pending' END AS status,
       min(started_at) AS submitted_at,
       max(finished_at) FILTER (WHERE error_type IN ('task_succeeded', 'task_failed')) AS finished_at,
       round(max(latency_ms) FILTER (WHERE error_type IN ('task_succeeded', 'task_failed')) / 1000, 3)
           AS duration_s,
       coalesce(sum(cost_usd) FILTER (WHERE cost_usd > 0), 0) AS charged_usd,
       coalesce(-sum(cost_usd) FILTER (WHERE cost_usd < 0), 0) AS refunded_usd,
       coalesce(sum(cost_usd), 0) AS cost_usd
FROM usage WHERE task_id IS NOT NULL GROUP BY task_id;

-- Keys with credit entries: credits, all-time spend (retained daily totals included), balance.
CREATE OR REPLACE VIEW balances AS
WITH c AS (SELECT key_id, sum(amount_usd) AS credits_usd, count(*) AS entries,
                  max(created_at) AS last_credit_at FROM credits GROUP BY key_id),
     s AS (SELECT key_id, sum(cost_usd) AS spent_usd
           FROM (SELECT key_id, cost_usd FROM usage UNION ALL SELECT key_id, cost_usd FROM usage_daily)
           WHERE key_id IN (SELECT key_id FROM c) GROUP BY key_id)
SELECT c.key_id, c.credits_usd, coalesce(s.spent_usd, 0) AS spent_usd,
       c.credits_usd - coalesce(s.spent_usd, 0) AS balance_usd, c.entries, c.last_credit_at
FROM c LEFT JOIN s USING (key_id) ORDER BY c.key_id;

-- Every credit entry with the key's running credit total.
CREATE OR REPLACE VIEW credit_history AS
SELECT id, created_at, key_id, kind, amount_usd,
       sum(amount_usd) OVER (PARTITION BY key_id ORDER BY id) AS credits_total_usd,
       reference, note, actor, policy_revision
FROM credits ORDER BY key_id, id;
"""

DDL = TABLES + VIEWS
