"""Usage from many nodes as one table: each ledger owner also writes what it ingests as Parquet
into a shared directory, and `tollgate usage sql|report --parquet DIR` reads every node's files
as one `usage` view (DESIGN §6).

Layout (hive partitioning): `<dir>/node=<node_id>/date=<YYYY-MM-DD>/<batch>-<ledger>.parquet`,
`date` being the UTC day of `started_at`. `<batch>` is the ledger's number of the oldest ingest
batch in the file and `<ledger>` a random id of the DuckDB file (so a recreated file never reuses
a name). Each file is written by DuckDB's COPY to `.<name>.tmp` in its final directory, fsynced,
then renamed: readers see whole files or none.

Exactly once, across crashes. The rows an ingest adds to `usage` are also added, in the same
transaction, to `parquet_outbox` (tagged with their batch number and node). An export writes the
outbox's rows, one file per (node, day), then deletes them from the outbox in one transaction.
A crash before that delete leaves the rows in the outbox; the next owner (at start) writes them
again under the *same* file name, because a file is named after the oldest batch it holds and
that batch is still in the outbox: the rename replaces the earlier file (with the same rows, plus
any ingested since), so no row is lost or written twice. Rows leave the outbox only once their
file is fsynced and renamed. What this does not cover: files removed or
rewritten by hand. Two live gateways with the same node id are detected: the second one stops
exporting until the first one's claim is gone (claim.py).

Batching by time: an export runs at most once per `interval_s` (default 60 s), plus at the
owner's start (crash leftovers) and shutdown, so a node writes at most one file per day-partition
per interval; nothing compacts files afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .claim import NodeClaim
from .schema import COLUMNS

if TYPE_CHECKING:  # DuckDB itself is imported by the store that hands us its connection
    import duckdb

    from ..settings import ServeSettings

log = logging.getLogger("tollgate.usage")

COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_UTC_DAY = "CAST(make_timestamp(epoch_us(started_at)) AS DATE)"  # no time-zone lookup per row
OUTBOX_TABLES = (
    "CREATE TABLE IF NOT EXISTS ledger_meta (ledger_id VARCHAR, batch_seq BIGINT, parquet_node VARCHAR);\n"
    "CREATE TABLE IF NOT EXISTS parquet_outbox (batch_seq BIGINT, node VARCHAR, "
    + ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS.items())
    + ");\n"
)
HIVE_TYPES = "{'node': 'VARCHAR', 'date': 'DATE'}"  # a node named 2026 stays a string


@dataclass(frozen=True)
class ParquetSink:
    directory: Path
    node: str
    interval_s: float = 60.0


def sink_from_settings(settings: ServeSettings | None = None) -> ParquetSink | None:
    """The process settings' sink (`TOLLGATE_USAGE_PARQUET_DIR`, `TOLLGATE_NODE_ID`, ...), if any."""
    if settings is None:
        from ..settings import ServeSettings

        settings = ServeSettings()
    if settings.usage_parquet_dir is None:
        return None
    return ParquetSink(settings.usage_parquet_dir, settings.node_id, settings.usage_parquet_interval_s)


SinkChoice = ParquetSink | None | Literal["env"]


def resolve_sink(choice: SinkChoice) -> ParquetSink | None:
    return sink_from_settings() if choice == "env" else choice


class ParquetExporter:
    """The outbox and its export, on the ledger owner's connection (its one DuckDB thread).

    `sink` None: rows are not queued, unless `inherit` (a one-call owner such as the CLI on a
    stopped gateway) and the file's last real owner exported: then they are queued for the
    next owner to write, under the node recorded in the file."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        sink: ParquetSink | None,
        data_dir: Path,
        inherit: bool = False,
    ) -> None:
        self.con = con
        self.sink = sink
        self._last_export = float("-inf")
        con.execute(OUTBOX_TABLES)
        have = {r[1] for r in con.execute("PRAGMA table_info('parquet_outbox')").fetchall()}
        for name, kind in COLUMNS.items():
            if name not in have:
                con.execute(f'ALTER TABLE parquet_outbox ADD COLUMN "{name}" {kind}')
        row = con.execute("SELECT ledger_id, parquet_node FROM ledger_meta").fetchone()
        if row is None:
            row = (uuid.uuid4().hex[:12], None)
            con.execute("INSERT INTO ledger_meta VALUES (?, 0, NULL)", [row[0]])
        self.ledger_id = str(row[0])
        self.claim: NodeClaim | None = None
        if sink is not None:
            self.node: str | None = sink.node
            self.claim = NodeClaim(sink.directory, sink.node, data_dir, self.ledger_id)
            con.execute("UPDATE ledger_meta SET parquet_node = ?", [sink.node])
        elif inherit:
            self.node = None if row[1] is None else str(row[1])
        else:
            self.node = None
            con.execute("UPDATE ledger_meta SET parquet_node = NULL")
            pending = self.pending()
            if pending:
                log.warning("%d usage rows wait for a Parquet export; no usage_parquet_dir is set", pending)

    @property
    def active(self) -> bool:
        """Whether ingested rows are queued for Parquet."""
        return self.node is not None

    def pending(self) -> int:
        row = self.con.execute("SELECT count(*) FROM parquet_outbox").fetchone()
        return int(row[0]) if row else 0

    def queue(self, table: str) -> None:
        """Inside the ingest transaction: the rows of `table` (just added to usage) join the outbox."""
        bump = "UPDATE ledger_meta SET batch_seq = batch_seq + 1 RETURNING batch_seq"
        row = self.con.execute(bump).fetchone()
        assert row is not None
        self.con.execute(
            f"INSERT INTO parquet_outbox (batch_seq, node, {COLUMN_LIST}) "
            f"SELECT ?, ?, {COLUMN_LIST} FROM {table}",
            [row[0], self.node],
        )

    def export(self, force: bool = False) -> int:
        """Write the outbox as Parquet if the interval has passed (or `force`); returns the number
        of files written. Failures (a shared mount away) are logged; the rows stay queued."""
        if self.sink is None or self.claim is None:
            return 0
        import duckdb  # loaded already: the connection is DuckDB's

        due = force or time.monotonic() - self._last_export >= self.sink.interval_s
        try:
            # resolved, as allowed_directories has it
            written = self._export(self.sink.directory.resolve(), self.claim, due)
        except (OSError, duckdb.Error):
            log.exception("usage Parquet export to %s failed; the rows stay queued", self.sink.directory)
            self._last_export = time.monotonic()  # retried after an interval, not every tick
            return 0
        if written:
            self._last_export = time.monotonic()
        return written

    def _export(self, directory: Path, claim: NodeClaim, due: bool) -> int:
        """Idle or not due: only the claim's refresh (when that is due)."""
        upto = self.con.execute("SELECT max(batch_seq) FROM parquet_outbox").fetchone() if due else None
        if upto is None or upto[0] is None:
            claim.check(due_only=True)
            return 0
        if not claim.check():  # another live gateway has this node id: the rows wait
            self._last_export = time.monotonic()
            return 0
        self._adopt(directory, claim.mine.node_id)
        groups = self.con.execute(
            f"SELECT node, {_UTC_DAY} AS day, min(batch_seq) FROM parquet_outbox "
            "WHERE batch_seq <= ? GROUP BY ALL ORDER BY 3",
            [upto[0]],
        ).fetchall()
        for node, day, first in groups:
            final = self._file(directory, node, day, first)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.tmp")
            target = str(tmp).replace("'", "''")
            self.con.execute(
                f"COPY (SELECT {COLUMN_LIST} FROM parquet_outbox WHERE batch_seq <= $upto AND node = $node "
                f"AND {_UTC_DAY} = $day ORDER BY started_at, request_id) TO '{target}' (FORMAT parquet)",
                {"upto": upto[0], "node": node, "day": day},
            )
            _fsync(tmp)
            os.replace(tmp, final)  # same name as before a crash: replaced, never doubled
            _fsync(final.parent)
        self.con.execute("BEGIN")
        try:
            self.con.execute("DELETE FROM parquet_outbox WHERE batch_seq <= ?", [upto[0]])
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        return len(groups)

    def _file(self, directory: Path, node: str, day: dt.date, first: int) -> Path:
        part = directory / f"node={node}" / f"date={day.isoformat()}"
        return part / f"{first:012d}-{self.ledger_id}.parquet"

    def _adopt(self, directory: Path, node: str) -> None:
        """Rows queued under another node id of this ledger (renamed, say to settle a node id
        conflict) are written under `node`; unless a crash left one of their files behind: those
        keep their node, so the file is rewritten under its name, not doubled."""
        groups = self.con.execute(
            f"SELECT node, {_UTC_DAY}, min(batch_seq) FROM parquet_outbox WHERE node <> ? GROUP BY ALL",
            [node],
        ).fetchall()
        if groups and not any(self._file(directory, *group).exists() for group in groups):
            self.con.execute("UPDATE parquet_outbox SET node = ? WHERE node <> ?", [node, node])


def _fsync(path: Path) -> None:
    """Durable before the outbox forgets the rows (a directory fsync may be unsupported)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def parquet_glob(directory: Path) -> str:
    return f"{directory.resolve()}/**/*.parquet"


def usage_view_sql(directory: Path) -> str:
    pattern = parquet_glob(directory).replace("'", "''")
    return (
        f"CREATE VIEW usage AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
        f"union_by_name = true, hive_types = {HIVE_TYPES})"
    )
