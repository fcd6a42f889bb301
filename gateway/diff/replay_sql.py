"""The replay's SQL: every usage row of a period re-priced under NEW's prices and multipliers.

The rates come from the relay's own pricing code (billing/pricing.py): for each price and each
distinct key multiplier, Python computes the exact Decimal USD per token (rate x multiplier /
1e6) and per unit, and DuckDB only multiplies token counts by them in DECIMAL(38,30) and rounds
half-to-even to the nano-dollar, as `Decimal.quantize` does. What DECIMAL cannot hold exactly
(tiered prices, audio seconds, a rate with more than 30 decimals) is priced in Python by
`compute_cost` itself (replay.py), so no row is priced by a second implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..billing.pricing import MILLION, dec
from ..config.snapshot import PriceRuntime

SCALE = 30
RATE_TYPE = f"DECIMAL(38,{SCALE})"
MJ_ROWS = "endpoint LIKE '%/mj/%'"  # billed per action, which the row does not keep: carried as is
# Rows the relay priced at all (a request with no usage has no cost either way).
PRICED_ROWS = f"usage_source <> 'none' AND provider IS NOT NULL AND served_model IS NOT NULL AND NOT ({MJ_ROWS})"


@dataclass(frozen=True)
class Rates:
    """USD per token (input, cached input, cache write, output, reasoning), per image, per
    request: the price's rates times the multiplier, as `compute_cost` applies them."""

    per_token: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]
    per_image: Decimal
    per_request: Decimal


def simple_rates(price: PriceRuntime, multiplier: float) -> Rates | None:
    """The rates, or None when SQL cannot price this price exactly (tiers, audio, too many
    decimals)."""
    base = price.rates
    if price.tiers or base.per_audio_second:
        return None
    m = dec(multiplier)
    inp, out = dec(base.input), dec(base.output)

    def or_default(value: float | None, default: Decimal) -> Decimal:
        return default if value is None else dec(value)

    tokens = (inp, or_default(base.cached_input, inp), or_default(base.cache_write, inp), out,
              or_default(base.reasoning, out))
    rates = Rates(tuple(t * m / MILLION for t in tokens),  # type: ignore[arg-type]
                  dec(base.per_image) * m, dec(base.per_request) * m)
    values = (*rates.per_token, rates.per_image, rates.per_request)
    if any(_decimals(v) > SCALE for v in values):
        return None
    return rates


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _lit(value: Decimal) -> str:
    return f"CAST('{value:f}' AS {RATE_TYPE})"


def _str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def values_cte(name: str, columns: list[str], rows: list[list[str]], empty: list[str]) -> str:
    """`name(columns) AS (VALUES ...)`; VALUES cannot be empty, so an unmatchable row stands in."""
    body = ",\n".join("(" + ", ".join(r) + ")" for r in rows or [empty])
    return f"{name}({', '.join(columns)}) AS (VALUES\n{body})"


EXACT = (
    "greatest(u.prompt_tokens - u.cached_tokens - u.cache_write_tokens, 0) * r.r_in"
    " + u.cached_tokens * r.r_cached + u.cache_write_tokens * r.r_write"
    " + greatest(u.completion_tokens - u.reasoning_tokens, 0) * r.r_out"
    " + u.reasoning_tokens * r.r_reasoning + u.images * r.r_image + r.r_request"
)


def half_even(expr: str) -> str:
    """`expr` (>= 0) to 9 decimals, ties to even like Decimal.quantize (DuckDB's round() sends
    ties away from zero, so an odd result of a tie steps back)."""
    r = f"CAST(round({expr}, 9) AS DECIMAL(38,9))"
    return (f"CASE WHEN {r} - ({expr}) = 0.0000000005 AND CAST({r} * 1000000000 AS HUGEINT) % 2 = 1 "
            f"THEN {r} - 0.000000001 ELSE {r} END")


@dataclass(frozen=True)
class PriceTable:
    """The VALUES tables the query joins: (provider, model) -> price id, key -> multiplier id,
    (price id, multiplier id) -> rates. Price ids of complex prices have no rates row."""

    pairs: list[tuple[str, str, int, bool]]  # provider, served model, price id, priced in python
    keys: dict[str, int]  # key id -> multiplier id (absent: id 0, multiplier 1.0)
    rates: dict[tuple[int, int], Rates]

    def ctes(self) -> list[str]:
        pairs = [[_str(p), _str(m), str(i), "true" if py else "false"] for p, m, i, py in self.pairs]
        keys = [[_str(k), str(i)] for k, i in sorted(self.keys.items())]
        rates = [[str(p), str(m), *(_lit(v) for v in (*r.per_token, r.per_image, r.per_request))]
                 for (p, m), r in sorted(self.rates.items())]
        zero = _lit(Decimal(0))
        return [
            values_cte("price_ids", ["provider", "served_model", "pid", "in_python"], pairs,
                       ["NULL", "NULL", "-1", "false"]),
            values_cte("key_mults", ["key_id", "mid"], keys, ["NULL", "0"]),
            values_cte("rates", ["pid", "mid", "r_in", "r_cached", "r_write", "r_out", "r_reasoning",
                                 "r_image", "r_request"], rates, ["-1", "-1", *[zero] * 7]),
        ]


def priced_rows_sql(table: PriceTable, since: str) -> str:
    """One row per usage row of the period: its key, group, model, old cost and new cost (NULL:
    no price in NEW; priced in Python: `in_python`)."""
    return f"""WITH {(','.join(chr(10) + c for c in table.ctes()))},
exact AS (
  SELECT u.request_id, u.key_id, u."group", u.served_model, u.requested_model, u.cost_usd AS old_cost,
         {MJ_ROWS} AS carried, ({PRICED_ROWS}) AS priced, coalesce(p.in_python, false) AS in_python,
         p.pid IS NULL AS no_price, {EXACT} AS exact_cost
  FROM usage u
  LEFT JOIN price_ids p ON p.provider = u.provider AND p.served_model = u.served_model
  LEFT JOIN key_mults k ON k.key_id = u.key_id
  LEFT JOIN rates r ON r.pid = p.pid AND r.mid = coalesce(k.mid, 0)
  WHERE u.started_at >= TIMESTAMPTZ {_str(since)}
)
SELECT request_id, key_id, "group", served_model, requested_model, old_cost, carried, priced,
       in_python, no_price,
       CASE WHEN carried THEN old_cost WHEN NOT priced OR exact_cost IS NULL THEN NULL
            ELSE {half_even('exact_cost')} END AS new_cost
FROM exact"""


def totals_sql(table: PriceTable, since: str) -> str:
    """Old and new cost per key, per group, per model and in total, in one scan."""
    return f"""WITH rows AS ({priced_rows_sql(table, since)})
SELECT grouping(key_id, "group", served_model) AS level, key_id, "group", served_model,
       count(*) AS requests, sum(old_cost) AS old_cost, sum(new_cost) AS new_cost,
       count(*) FILTER (WHERE priced AND no_price) AS unpriced
FROM rows
GROUP BY GROUPING SETS ((key_id), ("group"), (served_model), ())"""


def pairs_sql(since: str) -> str:
    return (f"SELECT provider, served_model, count(*) AS n FROM usage "
            f"WHERE started_at >= TIMESTAMPTZ {_str(since)} AND {PRICED_ROWS} GROUP BY ALL")


def python_rows_sql(table: PriceTable, since: str) -> str:
    """The rows of prices SQL cannot price exactly, grouped by what `compute_cost` reads."""
    pairs = [f"({_str(p)}, {_str(m)})" for p, m, _, py in table.pairs if py]
    if not pairs:
        return ""
    return (f"SELECT key_id, \"group\", provider, served_model, prompt_tokens, completion_tokens, "
            f"cached_tokens, cache_write_tokens, reasoning_tokens, images, audio_seconds, count(*) AS n "
            f"FROM usage WHERE started_at >= TIMESTAMPTZ {_str(since)} AND {PRICED_ROWS} "
            f"AND (provider, served_model) IN ({', '.join(pairs)}) GROUP BY ALL")


def admitted_sql(since: str) -> str:
    """Served requests by key, requested model and what served them: what NEW would deny or
    send elsewhere is decided per combination in Python."""
    return (f"SELECT key_id, requested_model, provider, served_model, count(*) AS n FROM usage "
            f"WHERE started_at >= TIMESTAMPTZ {_str(since)} AND status < 400 AND key_id IS NOT NULL "
            f"AND requested_model IS NOT NULL GROUP BY ALL")
