"""Admin SQL over the ledger (`POST /admin/usage/query`, `tollgate usage sql|report|export`) on a
DuckDB instance that can neither write nor touch a file.

Why not a check of the statement's shape: DuckDB runs any statement inside `EXPLAIN ANALYZE`,
and a statement that parses as a SELECT can write (`WITH d AS (DELETE FROM usage RETURNING *)
SELECT ...`). Only limits DuckDB enforces itself are safe, so a query runs on a fresh in-memory
instance that
* ATTACHes the ledger file READ_ONLY: every write fails ("attached in read-only mode"), and each
  query also runs in a READ ONLY transaction (which covers the instance's own in-memory catalog);
* has `enable_external_access = false` and the local file system disabled (`disabled_filesystems`):
  no read_blob / read_csv / glob / COPY / ATTACH / INSTALL of any path. External access alone is
  not enough: DuckDB always lets a database read its own attached file and WAL by name. The pages
  of the attached ledger are read through the handle opened by ATTACH, so queries still work;
* then sets `lock_configuration = true` (no SET can undo the above) and has no temp directory
  (a query that does not fit in memory fails instead of spilling to disk).

The writer's own connection cannot be used: it must read spool segments and write Parquet
(settings are per instance, and only ever tighten), and `allowed_paths` always holds its file.
A second instance cannot attach the file while the writer has it open, in this process or any
other, so the ledger owner takes turns: the writer is closed (a checkpoint, so the reader sees
every committed row) before a reader opens, and the reader is closed before the writer reopens
(see LedgerStore). All of it runs on the owner's one DuckDB thread.

The statement check before (exactly one statement, of type SELECT, by DuckDB's own parser) is not
the safety: it turns EXPLAIN, PRAGMA, SET, CALL, multi-statements ... into clear errors.

`--parquet DIR` (ParquetLedger) has no ledger file: its view reads the Parquet files at query
time, so that instance keeps file access, limited to DIR; the rest applies to it too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from .parquet import usage_view_sql
from .schema import CREDITS, USAGE_DAILY, VIEWS

T = TypeVar("T")
ONLY_SELECT = "send exactly one read-only statement (SELECT, WITH ... SELECT, FROM ..., VALUES, DESCRIBE)"
# Every reader's session: UTC like the writer, no Python variables as tables, no extension loading.
READER_SETTINGS = (
    "enable_progress_bar = false", "TimeZone = 'UTC'", "python_enable_replacements = false",
    "autoinstall_known_extensions = false", "autoload_known_extensions = false",
)
_COPY_OPTIONS = {"parquet": "(FORMAT parquet)", "csv": "(FORMAT csv, HEADER)"}


class QueryError(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_select(sql: str) -> str:
    """`sql` if DuckDB's parser finds exactly one statement in it and that one is a SELECT (what
    reaches the instance is still the whole text: the read-only instance is the safety)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    if len(statements) != 1:
        found = f"{len(statements)} statements" if statements else "no statement"
        raise QueryError(f"{ONLY_SELECT} (found {found})")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs the statement it explains
        raise QueryError(f"EXPLAIN is not allowed (EXPLAIN ANALYZE runs its statement): {ONLY_SELECT}")
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"{kind.name} is not allowed: {ONLY_SELECT}")
    return sql


def open_reader(ledger: Path, writable_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """The locked-down instance described above. `writable_dir` (an export's private staging
    directory): the local file system stays on, limited to that directory (and, as DuckDB
    always allows, the ledger file itself: bytes its CLI user can read anyway)."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "temp_directory": str(writable_dir) if writable_dir else ""}
    con = duckdb.connect(":memory:", config=config)
    try:
        target = str(ledger.resolve()).replace("'", "''")
        con.execute(f"ATTACH '{target}' AS ledger (READ_ONLY)")
        con.execute("USE ledger")  # unqualified names (usage, the views) resolve in the ledger
        for setting in READER_SETTINGS:
            con.execute(f"SET {setting}")
        if writable_dir is not None:
            con.execute("SET allowed_directories = ?", [[f"{writable_dir.resolve()}/"]])
        con.execute("SET enable_external_access = false")
        if writable_dir is None:  # only after the line above: that one resolves the allowed paths
            con.execute("SET disabled_filesystems = 'LocalFileSystem'")
        con.execute("SET lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con


def _timed(con: duckdb.DuckDBPyConnection, timeout_s: float, work: Callable[[], T]) -> T:
    """`work()` in a READ ONLY transaction, interrupted after `timeout_s` (a runaway query must
    not stall ingestion for long); DuckDB errors become QueryError."""
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.start()
    try:
        con.execute("BEGIN TRANSACTION READ ONLY")
        return work()
    except duckdb.InterruptException:
        raise QueryError(f"query cancelled after {timeout_s:g} s") from None
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    finally:
        timer.cancel()
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")


def run_select(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, limit: int = 10_000,
    params: list[Any] | None = None,
) -> dict[str, Any]:
    """Results of a checked SELECT as JSON-able columns and rows (at most `limit` rows)."""
    check_select(sql)

    def work() -> tuple[list[str], list[Any]]:
        cursor = con.execute(sql, params or [])
        return [d[0] for d in cursor.description or []], cursor.fetchmany(limit + 1)

    columns, rows = _timed(con, timeout_s, work)
    return {
        "columns": columns,
        "rows": [[_jsonable(v) for v in r] for r in rows[:limit]],
        "truncated": len(rows) > limit,
    }


def copy_select(
    con: duckdb.DuckDBPyConnection, sql: str, target: Path, fmt: str, timeout_s: float,
    params: list[Any] | None = None,
) -> int:
    """Write a checked SELECT's result to `target` (in the reader's writable directory) as
    Parquet or CSV; returns the number of rows."""
    option = _COPY_OPTIONS.get(fmt)
    if option is None:
        raise QueryError(f"unknown export format {fmt!r} (parquet or csv)")
    body = check_select(sql).strip().rstrip(";")
    path = str(target).replace("'", "''")
    statement = f"COPY (\n{body}\n) TO '{path}' {option}"  # newlines: a trailing -- comment ends
    try:
        kinds = [s.type for s in duckdb.extract_statements(statement)]
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    if kinds != [duckdb.StatementType.COPY]:  # the SELECT must not have closed the parenthesis
        raise QueryError(ONLY_SELECT)
    row = _timed(con, timeout_s, lambda: con.execute(statement, params or []).fetchone())
    return int(row[0]) if row else 0


class ParquetLedger:
    """Every node's Parquet files under `directory` as one read-only `usage` view (plus the
    ledger's views, over an empty usage_daily): no gateway and no DuckDB file needed. The view
    reads the files at query time, so this instance keeps file access, limited to `directory`
    (the CLI user's own files); writes are refused as for the ledger (one SELECT, in a READ ONLY
    transaction, configuration locked)."""

    def __init__(self, directory: Path, query_timeout_s: float = 60.0) -> None:
        self.query_timeout_s = query_timeout_s
        if not directory.is_dir():
            raise QueryError(f"no such directory: {directory}")
        if next(directory.glob("**/*.parquet"), None) is None:
            raise QueryError(f"no Parquet files under {directory}")
        self.con = duckdb.connect()
        for setting in READER_SETTINGS:
            self.con.execute(f"SET {setting}")
        self.con.execute("SET allowed_directories = ?", [[f"{directory.resolve()}/"]])
        self.con.execute("SET enable_external_access = false")
        self.con.execute(usage_view_sql(directory))
        self.con.execute(USAGE_DAILY)
        self.con.execute(CREDITS)  # empty: credits live in each node's DuckDB; the views need them
        self.con.execute(VIEWS)
        self.con.execute("SET lock_configuration = true")

    def query(self, sql: str, limit: int = 10_000) -> dict[str, Any]:
        return run_select(self.con, sql, self.query_timeout_s, limit)

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
