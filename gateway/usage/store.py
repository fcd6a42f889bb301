"""The DuckDB side of the ledger, used only by the process that holds the ingest lock.

Spool segments are loaded in batches with `read_json` (never row by row). A row whose
`request_id` is already in the table is skipped (an anti-join against the rows that started no
earlier than the batch's oldest: a re-read row is byte-identical, so its duplicate is among
them, and DuckDB's zone maps skip the rest), so a crash between loading a segment and deleting
it never counts a request twice.

With a Parquet sink (see parquet.py), the rows an ingest adds also join an outbox in the same
transaction, and are written as Parquet from there.

The connection cannot touch the file system outside the spool and the export directory
(`enable_external_access = false`): an admin's SQL can read the ledger, not `/proc/self/environ`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from .parquet import ParquetExporter, ParquetSink, usage_view_sql
from .schema import COLUMNS, TABLES, USAGE_DAILY, VIEWS

log = logging.getLogger("tollgate.usage")
READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_JSON_COLUMNS = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items()) + "}"
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_LOAD = (
    f"CREATE OR REPLACE TEMP TABLE batch AS SELECT {_COLUMN_LIST} FROM read_json(?, "
    f"format='newline_delimited', columns={_JSON_COLUMNS})"
)
_SELECT_NEW = f"""
SELECT {_COLUMN_LIST} FROM batch
ANTI JOIN (SELECT request_id FROM usage WHERE started_at >= (SELECT min(started_at) FROM batch))
    USING (request_id)
QUALIFY row_number() OVER (PARTITION BY request_id) = 1
"""
_INSERT_NEW = f"INSERT INTO usage ({_COLUMN_LIST}) {_SELECT_NEW}"

_BAD_INPUT = (duckdb.InvalidInputException, duckdb.ConversionException)  # not I/O errors: those retry


class QueryError(Exception):
    pass


class _SqlReader:
    """Read-only SQL with a time limit over `self.con`."""

    con: duckdb.DuckDBPyConnection
    query_timeout_s: float

    def _check_read_only(self, sql: str) -> None:
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        if len(statements) != 1 or statements[0].type not in READ_ONLY:
            raise QueryError("only one read-only statement (SELECT, WITH ... SELECT, EXPLAIN) is allowed")

    def _run(self, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Execute with a time limit: a runaway query must not stall ingestion for long."""
        timer = threading.Timer(self.query_timeout_s, self.con.interrupt)
        timer.start()
        try:
            return self.con.execute(sql, params or [])
        except duckdb.InterruptException:
            raise QueryError(f"query cancelled after {self.query_timeout_s:g} s") from None
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        finally:
            timer.cancel()

    def query(self, sql: str, params: list[Any] | None = None, limit: int = 10_000) -> dict[str, Any]:
        """Run read-only SQL; results as JSON-able columns and rows (at most `limit` rows)."""
        self._check_read_only(sql)
        cursor = self._run(sql, params)
        columns = [d[0] for d in cursor.description or []]
        try:
            rows = cursor.fetchmany(limit + 1)
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        return {
            "columns": columns,
            "rows": [[_jsonable(v) for v in r] for r in rows[:limit]],
            "truncated": len(rows) > limit,
        }


class LedgerStore(_SqlReader):
    """`parquet`: also write ingested rows there (see parquet.py). `inherit_parquet`: without a
    sink, still queue rows for it if the file's last owner had one (a one-call owner)."""

    def __init__(
        self,
        path: Path,
        query_timeout_s: float = 60.0,
        parquet: ParquetSink | None = None,
        inherit_parquet: bool = False,
    ) -> None:
        self.path = path
        self.spool_dir = path.parent / "spool"
        self.export_dir = path.parent / "exports"
        self.query_timeout_s = query_timeout_s
        for d in (self.spool_dir, self.export_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path))
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET python_enable_replacements = false")
        dirs = [self.spool_dir, self.export_dir]
        if parquet is not None:  # a mount that is away must not stop ingesting: the export retries
            dirs.append(parquet.directory)
        self.con.execute("SET allowed_directories = ?", [[f"{d.resolve()}/" for d in dirs]])
        self.con.execute("SET enable_external_access = false")
        self.con.execute(TABLES)
        self._migrate()
        self.con.execute(VIEWS)
        self.parquet = ParquetExporter(self.con, parquet, path.parent, inherit_parquet)
        self.parquet.export(force=True)  # what a crashed owner left queued

    def _migrate(self) -> None:
        """Columns added to UsageRecord since the file was created are added to the table."""
        have = {r[1] for r in self.con.execute("PRAGMA table_info('usage')").fetchall()}
        for name, kind in COLUMNS.items():
            if name not in have:
                self.con.execute(f'ALTER TABLE usage ADD COLUMN "{name}" {kind}')

    def close(self) -> None:
        self.parquet.export(force=True)
        self.con.close()

    def ingest(self, segments: list[Path]) -> int:
        """Load closed spool segments, then delete them; returns the number of rows added.
        A segment DuckDB cannot read is set aside as `<name>.bad` (logged), never retried."""
        todo = [p for p in segments if p.exists() and p.stat().st_size > 0]
        try:
            added = self._load(todo)
        except _BAD_INPUT:
            added = 0
            for p in todo:  # find the culprit; the others load one by one
                try:
                    added += self._load([p])
                except _BAD_INPUT as exc:
                    log.error("usage spool segment %s cannot be loaded (%s); kept as .bad", p, exc)
                    with contextlib.suppress(OSError):
                        p.rename(p.with_name(p.name + ".bad"))
        for p in segments:
            with contextlib.suppress(OSError):
                p.unlink()
        self.parquet.export()  # at most once per interval
        return added

    def _load(self, files: list[Path]) -> int:
        if not files:
            return 0
        self.con.execute("BEGIN")
        try:
            self.con.execute(_LOAD, [[str(p.resolve()) for p in files]])
            if self.parquet.active:  # the same new rows go to usage and to the Parquet outbox
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE fresh AS {_SELECT_NEW}")
                copy = f"INSERT INTO usage ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM fresh"
                row = self.con.execute(copy).fetchone()
                self.parquet.queue("fresh")
                self.con.execute("DROP TABLE fresh")
            else:
                row = self.con.execute(_INSERT_NEW).fetchone()
            self.con.execute("DROP TABLE batch")
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        return int(row[0]) if row else 0

    def export(self, out: Path, fmt: str, sql: str = "SELECT * FROM usage ORDER BY started_at") -> int:
        """Write a query's result as Parquet or CSV to `out` (via the export directory, the only
        place this connection may write); returns the number of rows."""
        self._check_read_only(sql)
        if fmt not in ("parquet", "csv"):
            raise QueryError(f"unknown export format {fmt!r} (parquet or csv)")
        option = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER)"
        staging = self.export_dir / f"{uuid.uuid4().hex}.{fmt}"
        try:
            row = self._run(f"COPY ({sql}) TO '{staging}' {option}").fetchone()
            shutil.move(staging, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
        return int(row[0]) if row else 0

    def apply_retention(self, days: int | None) -> int:
        """Fold rows older than `days` into usage_daily (totals kept), then delete them."""
        if not days:
            return 0
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        self.con.execute("BEGIN")
        try:
            self.con.execute(
                """INSERT INTO usage_daily
                   SELECT CAST(started_at AS DATE), key_id, "group", provider, served_model, count(*),
                          count(*) FILTER (WHERE status >= 400), sum(prompt_tokens), sum(completion_tokens),
                          sum(cached_tokens), sum(cost_usd)
                   FROM usage WHERE started_at < ? GROUP BY ALL""",
                [cutoff],
            )
            row = self.con.execute("DELETE FROM usage WHERE started_at < ?", [cutoff]).fetchone()
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        moved = int(row[0]) if row else 0
        if moved:
            log.info("usage retention: %d rows older than %d days folded into usage_daily", moved, days)
        return moved

    def spend_since(self, kind: str, ident: str, since: dt.datetime) -> Decimal:
        """USD spent by a key or group from `since` on. Days already folded into usage_daily by
        retention count whole (a budget period longer than the retention stays right to a day)."""
        if kind not in ("key", "group"):
            raise QueryError(f"spend: kind must be key or group, not {kind!r}")
        column = "key_id" if kind == "key" else '"group"'
        row = self.con.execute(
            f"""SELECT (SELECT coalesce(sum(cost_usd), 0) FROM usage
                        WHERE {column} = $id AND started_at >= $t)
                     + (SELECT coalesce(sum(cost_usd), 0) FROM usage_daily
                        WHERE {column} = $id AND day >= CAST($t AS DATE))""",
            {"id": ident, "t": since},
        ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)


class ParquetLedger(_SqlReader):
    """Every node's Parquet files under `directory` as one read-only `usage` view (plus the
    ledger's views, over an empty usage_daily): no gateway and no DuckDB file needed."""

    def __init__(self, directory: Path, query_timeout_s: float = 60.0) -> None:
        self.query_timeout_s = query_timeout_s
        if not directory.is_dir():
            raise QueryError(f"no such directory: {directory}")
        if next(directory.glob("**/*.parquet"), None) is None:
            raise QueryError(f"no Parquet files under {directory}")
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET python_enable_replacements = false")
        self.con.execute("SET allowed_directories = ?", [[f"{directory.resolve()}/"]])
        self.con.execute("SET enable_external_access = false")
        self.con.execute(usage_view_sql(directory))
        self.con.execute(USAGE_DAILY)
        self.con.execute(VIEWS)

    def close(self) -> None:
        self.con.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes | uuid.UUID):
        return str(value)
    return value


def dispatch(store: LedgerStore, request: dict[str, Any]) -> dict[str, Any]:
    """One request of the owner's socket protocol (see owner.py), answered from `store`."""
    op = request.get("op")
    try:
        if op == "query":
            return store.query(str(request["sql"]))
        if op == "export":
            sql = str(request.get("sql") or "SELECT * FROM usage ORDER BY started_at")
            return {"rows": store.export(Path(request["out"]), str(request["format"]), sql)}
        if op == "spend":
            since = dt.datetime.fromisoformat(str(request["since"]))
            return {"spend": str(store.spend_since(str(request["kind"]), str(request["ident"]), since))}
    except QueryError as exc:
        return {"error": str(exc)}
    except (KeyError, ValueError, TypeError, OSError) as exc:
        return {"error": f"bad ledger request: {type(exc).__name__}: {exc}"}
    return {"error": f"unknown op {op!r}"}
