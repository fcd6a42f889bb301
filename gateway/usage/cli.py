"""`tollgate usage sql | report | export | claims | schema`: the ledger from the command line.

Works while the gateway runs (through the ledger owner's socket) and when it does not; with
`--parquet DIR`, `sql` and `report` read every node's Parquet files instead (no gateway, no
DuckDB file: see parquet.py)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .client import LedgerUnavailable, call
from .lock import LEDGER_FILE, socket_path
from .schema import DDL

REPORT_KEYS = {
    "key": "key_id",
    "group": '"group"',
    "model": "served_model",
    "provider": "provider",
    "day": "CAST({local} AS DATE)",
    "hour": "date_trunc('hour', {local})",
    "node": "node",  # --parquet only
    "task": "task_id",  # asynchronous tasks: one row each, from the `tasks` view (usage/schema.py)
}
DATA_DIR_HELP = "the gateway data directory (default as for serve: TOLLGATE_DATA_DIR, --config, data)"
UTC_CLOCK = "make_timestamp(epoch_us(started_at))"  # no time-zone lookup per row
BALANCES = "SELECT key_id, credits_usd, spent_usd, balance_usd, last_credit_at FROM balances"


def add_commands(sub: Any) -> None:
    usage = sub.add_parser("usage", help="query the usage ledger").add_subparsers(
        dest="usage_command", required=True
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help=DATA_DIR_HELP)
    common.add_argument("--config", help="settings file (TOML) of `tollgate serve`: its data_dir")
    common.add_argument("--format", choices=["table", "csv", "json"], default="table")
    common.add_argument(
        "--parquet",
        metavar="DIR",
        help="query the Parquet files of all nodes under DIR (a usage view with a node column) "
        "instead of this node's ledger",
    )

    sql = usage.add_parser("sql", parents=[common], help="run a read-only SQL query")
    sql.add_argument("sql")
    sql.set_defaults(func=sql_command)

    report = usage.add_parser("report", parents=[common], help="requests, tokens and spend by ...")
    report.add_argument("--by", choices=sorted(REPORT_KEYS), default="key")
    report.add_argument("--since", help="ISO date or time (inclusive)")
    report.add_argument("--until", help="ISO date or time (exclusive)")
    report.add_argument("--tz", default="UTC", help="time zone of days, hours and bare dates (default UTC)")
    report.set_defaults(func=report_command)

    export = usage.add_parser("export", help="write the ledger to Parquet or CSV")
    export.add_argument("--data-dir", help=DATA_DIR_HELP)
    export.add_argument("--config", help="settings file (TOML) of `tollgate serve`: its data_dir")
    export.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    export.add_argument("--out", required=True)
    export.add_argument("--sql", help="export the result of this query instead of the whole table")
    export.set_defaults(func=export_command)

    claims = usage.add_parser("claims", help="list (or release) the node ids claimed in a Parquet directory")
    claims.add_argument("--parquet", metavar="DIR", required=True)
    claims.add_argument("--release", metavar="NODE", help="remove this node id's claim (its gateway is gone)")
    claims.set_defaults(func=claims_command)

    schema = usage.add_parser("schema", help="write the usage table DDL")
    schema.add_argument("--out", default="schemas/usage.sql")
    schema.set_defaults(func=schema_command)


def ledger_dir(args: argparse.Namespace) -> Path | None:
    """The data directory `tollgate serve` would use (`--data-dir`, else `TOLLGATE_DATA_DIR`,
    else the settings file's `data_dir` (`--config` or `TOLLGATE_CONFIG`), else `data`), if a
    ledger is there: never create an empty one that would answer 0 rows."""
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        from pydantic import ValidationError

        from ..settings import CONFIG_ENV, ServeSettings

        if args.config:
            os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
        try:
            data_dir = ServeSettings().data_dir
        except (ValidationError, OSError) as exc:
            print(f"error: cannot read the gateway settings: {exc}", file=sys.stderr)
            return None
    # A ledger file, rows spooled but not loaded yet (loaded by this call), or a live owner.
    found = (data_dir / LEDGER_FILE, data_dir / "spool", Path(socket_path(data_dir)))
    if not any(path.exists() for path in found):
        print(f"no ledger at {data_dir.absolute() / LEDGER_FILE} (start the gateway, or pass --data-dir)",
              file=sys.stderr)
        return None
    return data_dir


def _run(data_dir: Path | None, request: dict[str, Any]) -> dict[str, Any] | None:
    if data_dir is None:
        return None
    try:
        answer = call(data_dir, request)
    except LedgerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if "error" in answer:
        print(f"error: {answer['error']}", file=sys.stderr)
        return None
    return answer


def _query(args: argparse.Namespace, sql: str) -> dict[str, Any] | None:
    if args.parquet is None:
        return _run(ledger_dir(args), {"op": "query", "sql": sql})
    from .readonly_query import ParquetLedger, QueryError

    try:
        reader = ParquetLedger(Path(args.parquet))
        try:
            return reader.query(sql)
        finally:
            reader.close()
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def sql_command(args: argparse.Namespace) -> int:
    answer = _query(args, args.sql)
    if answer is None:
        return 1
    print_result(answer, args.format)
    return 0


def report_sql(by: str, since: str | None, until: str | None, tz: str = "UTC") -> str:
    """Raises ValueError for an unknown time zone or a malformed bound."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None
    local = UTC_CLOCK if tz == "UTC" else f"timezone('{zone.key}', started_at)"
    column = REPORT_KEYS[by].format(local=local)
    where = []
    for bound, op in ((since, ">="), (until, "<")):
        if bound:
            stamp = dt.datetime.fromisoformat(bound)  # validates; raises ValueError on junk
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=zone)
            where.append(f"started_at {op} TIMESTAMPTZ '{stamp.isoformat()}'")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    if by == "task":  # the tasks submitted within the bounds: status, duration, charge, refund
        return (
            "SELECT task_id, key_id, endpoint, served_model, provider, status, submitted_at, duration_s, "
            f"charged_usd, refunded_usd, cost_usd FROM tasks {clause.replace('started_at', 'submitted_at')} "
            "ORDER BY submitted_at"
        )
    return (
        f"SELECT {column} AS {by}, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors, "
        f"sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, "
        f"sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd "
        f"FROM usage {clause} GROUP BY 1 ORDER BY 1 NULLS FIRST"
    )


def report_command(args: argparse.Namespace) -> int:
    if args.by == "node" and args.parquet is None:
        print("error: --by node needs --parquet DIR (a node's own ledger has one node)", file=sys.stderr)
        return 2
    if args.by == "task" and args.parquet is not None:
        print("error: --by task reads this node's ledger (the tasks view), not --parquet", file=sys.stderr)
        return 2
    try:
        sql = report_sql(args.by, args.since, args.until, args.tz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    answer = _query(args, sql)
    if answer is None:
        return 1
    print_result(answer, args.format)
    if args.by == "key" and args.format == "table" and args.parquet is None:
        balances = _query(args, BALANCES)  # prepaid keys: all-time, whatever --since/--until say
        if balances is None:
            return 1
        if balances["rows"]:
            print("\nprepaid balances (credits - all-time spend):")
            print_result(balances, args.format)
    return 0


def export_command(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    answer = _run(ledger_dir(args), {"op": "export", "out": str(out), "format": args.format, "sql": args.sql})
    if answer is None:
        return 1
    print(f"wrote {answer['rows']} rows to {out}")
    return 0


def claims_command(args: argparse.Namespace) -> int:
    from .claim import CLAIM_TTL_S, list_claims, release

    directory = Path(args.parquet)
    if args.release:
        gone = release(directory, args.release)
        if gone is None:
            print(f"no claim for node id {args.release!r} in {directory}")
        else:
            print(f"released node id {args.release!r} (was held by {gone.where()}, pid {gone.pid}, "
                  f"last refreshed {gone.refreshed_at}); a gateway still running with it claims it again")
        return 0
    rows = [[c.node_id, c.host, c.data_dir, c.pid, c.refreshed_at,
             "expired" if c.age_s() > CLAIM_TTL_S else "active"] for c in list_claims(directory)]
    print(render_table(["node_id", "host", "data_dir", "pid", "refreshed_at", "state"], rows))
    return 0


def schema_command(args: argparse.Namespace) -> int:
    Path(args.out).write_text(DDL)
    print(f"wrote {args.out}")
    return 0


def print_result(answer: dict[str, Any], fmt: str) -> None:
    columns, rows = answer["columns"], answer["rows"]
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(render_table(columns, rows))
    if answer.get("truncated"):
        print("(result truncated)", file=sys.stderr)


def render_table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r[i]) for r in rows) and bool(rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        )

    out = [line(columns), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(s.rstrip() for s in out)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
