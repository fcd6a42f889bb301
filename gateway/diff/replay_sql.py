"""The replay's SQL: every usage row of a period re-priced under NEW's prices and multipliers.

The rates come from the relay's own pricing code (billing/pricing.py): for each price and each
distinct key multiplier, Python computes the exact Decimal USD per token (rate x multiplier /
1e6) and per unit, as whole numbers of 10^-S dollars (S: the decimals that rate needs, at least
9). DuckDB only multiplies token counts by those integers in BIGINT (HUGEINT if that overflows;
11x slower) and rounds each row half-to-even to the nano-dollar, as `Decimal.quantize` does: no
float, no DECIMAL arithmetic (DECIMAL(38,x) runs on 128-bit integers, as slow as HUGEINT). What
needs more (tiered prices, audio, more than 18 decimals) is priced in Python by `compute_cost`
itself (replay.py), so no row is priced by a second implementation of the price rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..billing.pricing import MILLION, dec
from ..config.snapshot import PriceRuntime

MAX_SCALE = 18


def carried_rows(has_task_id: bool) -> str:
    """Rows billed per action or per second of video (tasks: Midjourney, Suno, videos, and their
    refunds), by what the row does not keep: carried at their recorded cost. Ledgers (and
    Parquet files) written before `task_id` existed have only Midjourney's endpoints to go by."""
    midjourney = "u.endpoint LIKE '%/mj/%'"
    return f"({midjourney} OR u.task_id IS NOT NULL)" if has_task_id else f"({midjourney})"


def priced_rows(has_task_id: bool) -> str:
    """Rows the relay priced by tokens (a request with no usage has no cost either way)."""
    return (f"u.usage_source <> 'none' AND u.provider IS NOT NULL AND u.served_model IS NOT NULL "
            f"AND NOT {carried_rows(has_task_id)}")


@dataclass(frozen=True)
class Rates:
    """Integers of 10^-scale USD: per token (input, cached input, cache write, output,
    reasoning), per image, per request: the price's rates times the multiplier, as
    `compute_cost` applies them."""

    scale: int
    per_token: tuple[int, int, int, int, int]
    per_image: int
    per_request: int


def simple_rates(price: PriceRuntime, multiplier: float) -> Rates | None:
    """The rates, or None when SQL cannot price this price exactly (tiers, audio, too many
    decimals)."""
    base = price.rates
    if price.tiers or base.per_audio_second or _has_audio_rates(base):
        return None
    m = dec(multiplier)
    inp, out = dec(base.input), dec(base.output)

    def or_default(value: float | None, default: Decimal) -> Decimal:
        return default if value is None else dec(value)

    per_million = (inp, or_default(base.cached_input, inp), or_default(base.cache_write, inp), out,
                   or_default(base.reasoning, out))
    tokens = [t * m / MILLION for t in per_million]
    units = [dec(base.per_image) * m, dec(base.per_request) * m]
    scale = max(9, *(_decimals(v) for v in (*tokens, *units)))
    if scale > MAX_SCALE:
        return None
    whole = [int(v.scaleb(scale)) for v in (*tokens, *units)]
    return Rates(scale, (whole[0], whole[1], whole[2], whole[3], whole[4]), whole[5], whole[6])


def _has_audio_rates(base: object) -> bool:
    """Rates for audio tokens (when the price type has them) are left to compute_cost."""
    return any(getattr(base, name, None) for name in ("audio_input", "audio_output"))


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def values_cte(name: str, columns: list[str], rows: list[list[str]], empty: list[str]) -> str:
    """`name(columns) AS (VALUES ...)`; VALUES cannot be empty, so an unmatchable row stands in."""
    body = ",\n".join("(" + ", ".join(r) + ")" for r in rows or [empty])
    return f"{name}({', '.join(columns)}) AS (VALUES\n{body})"


def exact_units(kind: str) -> str:
    """The row's cost in 10^-scale USD, exact, in integers of `kind` (BIGINT or HUGEINT)."""
    def c(column: str) -> str:
        return f"CAST({column} AS {kind})"

    return (
        f"{c('greatest(u.prompt_tokens - u.cached_tokens - u.cache_write_tokens, 0)')} * r.r_in"
        f" + {c('u.cached_tokens')} * r.r_cached + {c('u.cache_write_tokens')} * r.r_write"
        f" + {c('greatest(u.completion_tokens - u.reasoning_tokens, 0)')} * r.r_out"
        f" + {c('u.reasoning_tokens')} * r.r_reasoning + {c('u.images')} * r.r_image + r.r_request"
    )


def half_even_nanos(units: str, divisor: str) -> str:
    """`units / divisor` rounded half to even, as an integer number of nano-dollars (costs are
    never negative, so `//` and `%` are floor division and remainder)."""
    q, rem = f"(({units}) // {divisor})", f"(({units}) % {divisor})"
    return (f"{q} + CASE WHEN 2 * {rem} > {divisor} OR (2 * {rem} = {divisor} AND {q} % 2 = 1) "
            f"THEN 1 ELSE 0 END")


@dataclass(frozen=True)
class PriceTable:
    """The VALUES tables the query joins: price name -> price id (and whether Python prices it),
    key -> multiplier id, (price id, multiplier id) -> rates."""

    names: dict[str, tuple[int, bool]]  # NEW's price names: "model" or "provider/model"
    keys: dict[str, int]  # key id -> multiplier id (absent: id 0, multiplier 1.0)
    rates: dict[tuple[int, int], Rates]
    has_task_id: bool = True  # the ledger's usage table has the column

    def ctes(self, kind: str) -> list[str]:
        names = [[_str(n), str(i), "true" if py else "false"] for n, (i, py) in sorted(self.names.items())]
        keys = [[_str(k), str(i)] for k, i in sorted(self.keys.items())]
        rates = [[str(p), str(m), f"CAST({10 ** (r.scale - 9)} AS {kind})",
                  *(f"CAST({v} AS {kind})" for v in (*r.per_token, r.per_image, r.per_request))]
                 for (p, m), r in sorted(self.rates.items())]
        return [
            values_cte("price_names", ["name", "pid", "in_python"], names, ["NULL", "-1", "false"]),
            values_cte("key_mults", ["key_id", "mid"], keys, ["NULL", "0"]),
            values_cte("rates", ["pid", "mid", "divisor", "r_in", "r_cached", "r_write", "r_out",
                                 "r_reasoning", "r_image", "r_request"], rates, ["-1", "-1", *["1"] * 8]),
        ]

    def base_sql(self, since: str, kind: str) -> str:
        """The usage rows of the period with their NEW price id (`provider/model` before
        `model`, as Snapshot.price_for) and multiplier id."""
        by_provider = any("/" in name for name in self.names)
        provider_join = (
            "LEFT JOIN price_names pp ON pp.name = u.provider || '/' || u.served_model" if by_provider
            else "LEFT JOIN (SELECT NULL::INTEGER AS pid, false AS in_python) pp ON false"  # no such names
        )
        return f"""WITH {','.join(chr(10) + c for c in self.ctes(kind))},
base AS (
  SELECT u.*, coalesce(pp.pid, pm.pid) AS pid,
         CASE WHEN pp.pid IS NOT NULL THEN pp.in_python ELSE coalesce(pm.in_python, false) END AS in_python,
         coalesce(k.mid, 0) AS mid, {carried_rows(self.has_task_id)} AS carried,
         ({priced_rows(self.has_task_id)}) AS priced
  FROM usage u
  LEFT JOIN price_names pm ON pm.name = u.served_model
  {provider_join}
  LEFT JOIN key_mults k ON k.key_id = u.key_id
  WHERE u.started_at >= TIMESTAMPTZ {_str(since)}
)"""


def priced_rows_sql(table: PriceTable, since: str, kind: str = "BIGINT") -> str:
    """One row per usage row of the period: its key, group, model, old cost and new cost in
    nano-dollars (NULL: carried, not priced, no price in NEW, or priced in Python)."""
    return f"""{table.base_sql(since, kind)},
exact AS (
  SELECT u.request_id, u.key_id, u."group", u.served_model, u.cost_usd AS old_cost, u.carried, u.priced,
         u.in_python, u.pid IS NULL AS no_price, r.divisor, {exact_units(kind)} AS units
  FROM base u LEFT JOIN rates r ON r.pid = u.pid AND r.mid = u.mid
)
SELECT request_id, key_id, "group", served_model, old_cost, carried, priced, in_python, no_price,
       CASE WHEN carried OR NOT priced OR units IS NULL THEN NULL
            ELSE {half_even_nanos('units', 'divisor')} END AS new_nanos
FROM exact"""


def totals_sql(table: PriceTable, since: str, kind: str = "BIGINT") -> str:
    """Old and new cost per key, per group, per model and in total, in one scan. Rows carried
    at their recorded cost (Midjourney actions) are summed apart."""
    return f"""WITH priced_rows AS ({priced_rows_sql(table, since, kind)})
SELECT grouping(key_id, "group", served_model) AS level, key_id, "group", served_model,
       count(*) AS requests, sum(old_cost) AS old_cost, sum(new_nanos) AS new_nanos,
       sum(old_cost) FILTER (WHERE carried) AS carried_cost,
       count(*) FILTER (WHERE priced AND no_price) AS unpriced
FROM priced_rows
GROUP BY GROUPING SETS ((key_id), ("group"), (served_model), ())"""


def python_rows_sql(table: PriceTable, since: str) -> str:
    """The rows of prices SQL cannot price exactly, grouped by what `compute_cost` reads."""
    if not any(py for _, py in table.names.values()):
        return ""
    return (f"{table.base_sql(since, 'BIGINT')}\n"
            f"SELECT key_id, \"group\", provider, served_model, prompt_tokens, completion_tokens, "
            f"cached_tokens, cache_write_tokens, reasoning_tokens, images, audio_seconds, count(*) AS n "
            f"FROM base WHERE in_python AND priced GROUP BY ALL")


def admitted_sql(since: str) -> str:
    """Served requests by key, requested model and what served them: what NEW would deny or
    send elsewhere is decided per combination in Python."""
    return (f"SELECT key_id, requested_model, provider, served_model, count(*) AS n FROM usage "
            f"WHERE started_at >= TIMESTAMPTZ {_str(since)} AND status < 400 AND key_id IS NOT NULL "
            f"AND requested_model IS NOT NULL GROUP BY ALL")
