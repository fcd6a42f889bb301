"""One ingest batch: spool segments into `usage` in one transaction, which another thread may stop.

A row whose `request_id` is already in the table is skipped (an anti-join against the rows that
started no earlier than the batch's oldest: a re-read row is byte-identical, so its duplicate is
among them, and DuckDB's zone maps skip the rest), so a crash between loading a segment and
deleting it never counts a request twice. With a Parquet sink the same new rows join its outbox
in that transaction (parquet.py).

A background batch (usage/turns.py) can be preempted: `preempt()` interrupts the statement that
runs and sets a flag checked before the next one (DuckDB drops an interrupt that arrives before a
statement starts); the transaction rolls back. Never the COMMIT or the ROLLBACK: interrupted,
they would leave the batch undecided.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from .parquet import ParquetExporter
from .schema import COLUMNS

_JSON_COLUMNS = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items()) + "}"
COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_LOAD = (
    f"CREATE OR REPLACE TEMP TABLE batch AS SELECT {COLUMN_LIST} FROM read_json(?, "
    f"format='newline_delimited', columns={_JSON_COLUMNS})"
)
_SELECT_NEW = f"""
SELECT {COLUMN_LIST} FROM batch
ANTI JOIN (SELECT request_id FROM usage WHERE started_at >= (SELECT min(started_at) FROM batch))
    USING (request_id)
QUALIFY row_number() OVER (PARTITION BY request_id) = 1
"""
_INSERT_NEW = f"INSERT INTO usage ({COLUMN_LIST}) {_SELECT_NEW}"


class Preempted(Exception):
    """A background batch stopped for a foreground call (turns.py)."""


class BatchLoader:
    """Loads batches on one connection; `preempt()` may be called from any thread."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._preemptible = False  # a background batch's statements are running
        self._preempted = False
        self._guard = threading.Lock()  # the three above

    def preempt(self) -> None:
        """Stop a background batch (a no-op otherwise)."""
        with self._guard:
            if self._preemptible and self._con is not None:
                self._preempted = True
                self._con.interrupt()

    def load(self, con: duckdb.DuckDBPyConnection, parquet: ParquetExporter, files: list[Path],
             background: bool) -> int:
        """The rows added. Raises `Preempted` or `duckdb.InterruptException` when preempted."""
        if not files:
            return 0
        with self._guard:
            self._con, self._preemptible, self._preempted = con, background, False
        try:
            return self._insert(con, parquet, files)
        finally:
            with self._guard:
                self._preemptible = False

    def _insert(self, con: duckdb.DuckDBPyConnection, parquet: ParquetExporter, files: list[Path]) -> int:
        self.step(con, "BEGIN")
        try:
            self.step(con, _LOAD, [[str(p.resolve()) for p in files]])
            if parquet.active:  # the same new rows go to usage and to the Parquet outbox
                self.step(con, f"CREATE OR REPLACE TEMP TABLE fresh AS {_SELECT_NEW}")
                copy = f"INSERT INTO usage ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM fresh"
                row = self.step(con, copy).fetchone()
                parquet.queue("fresh")
                self.step(con, "DROP TABLE fresh")
            else:
                row = self.step(con, _INSERT_NEW).fetchone()
            self.step(con, "DROP TABLE batch")
            self.settle()
            con.execute("COMMIT")
        except Exception:
            self.settle(check=False)
            con.execute("ROLLBACK")
            raise
        return int(row[0]) if row else 0

    @property
    def preemptible(self) -> bool:
        return self._preemptible

    def settle(self, check: bool = True) -> None:
        """No more interrupts from here on; `check`: raise if one came."""
        with self._guard:
            self._preemptible = False
            if check and self._preempted:
                raise Preempted

    def step(self, con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None,
             ) -> duckdb.DuckDBPyConnection:
        """One statement of the batch, unless it was preempted meanwhile."""
        if self._preempted:
            raise Preempted
        return con.execute(sql, params)
