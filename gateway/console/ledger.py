"""The console's reads of the usage ledger: a batch of fixed queries sent to the ledger owner
in one socket request (one ingest check, one reader for the whole page), and downloads written
by the owner's export into the data directory, then streamed from there."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..usage.client import LedgerUnavailable, acall
from .queries import Query


class LedgerError(Exception):
    """The ledger could not answer: the page says so (503) rather than failing."""


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows and self.rows[0] else None


async def run(data_dir: Path, queries: list[Query], timeout: float = 30.0) -> list[Result]:
    request = {"op": "queries", "queries": [{"sql": sql, "params": p} for sql, p in queries]}
    answer = await _ask(data_dir, request, timeout)
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != len(queries):
        raise LedgerError("the ledger owner gave no results (is it an older version?)")
    return [Result(list(r["columns"]), list(r["rows"])) for r in results]


async def export(data_dir: Path, query: Query, fmt: str) -> Path:
    """The query's rows written by the owner as a CSV or Parquet file under the data directory's
    exports/; the response streams it from there (it may be large), and files left from earlier
    downloads are removed here."""
    sql, params = query
    folder = data_dir / "exports"
    _remove_stale(folder)
    out = (folder / f"console-{uuid.uuid4().hex}.{fmt}").resolve()
    await _ask(data_dir, {"op": "export", "out": str(out), "format": fmt, "sql": sql, "params": params},
               timeout=300.0)
    return out


def _remove_stale(folder: Path, older_than_s: float = 3600.0) -> None:
    cutoff = time.time() - older_than_s
    for path in folder.glob("console-*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


async def _ask(data_dir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        answer = await acall(data_dir, request, timeout=timeout)
    except LedgerUnavailable as exc:
        raise LedgerError(str(exc)) from None
    if "error" in answer:
        raise LedgerError(str(answer["error"]))
    return answer
