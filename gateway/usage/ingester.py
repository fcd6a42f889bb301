"""The ledger owner as its own process, started by `tollgate serve` next to the HTTP workers.

Workers then only append to their spool (no DuckDB in their memory); if this process dies, a
worker takes the ingest lock over (see Ledger), so no usage waits for a restart.

    python -m gateway.usage.ingester --data-dir DIR --policies DIR [--node-id ID --parquet-dir DIR]
                                     [--no-parquet]

The Parquet sink (see parquet.py) comes from the flags, else from the process settings
(`TOLLGATE_USAGE_PARQUET_DIR`, `TOLLGATE_NODE_ID`, `TOLLGATE_USAGE_PARQUET_INTERVAL_S`), which
`tollgate serve` passes down in the environment; with `--no-parquet` (what `tollgate serve`
passes when its settings name no Parquet directory) none, and the settings are not loaded.

What it loads: at start only the lock, the socket and the spool reader (no DuckDB, no pydantic,
no bundle compiler); DuckDB and the bundle (for `retention_days`) when there is a row to ingest
or a query to answer (owner.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .lock import try_lock
from .owner import Owner
from .parquet import ParquetSink, sink_from_settings

log = logging.getLogger("tollgate.usage")


def retention_reader(policies: Path) -> Callable[[], int | None]:
    def read() -> int | None:
        from ..config import BundleError, load_snapshot  # when the ledger file is opened, not at start

        try:
            return load_snapshot(policies, allow_missing_env=True).settings.usage.retention_days
        except BundleError:
            return None

    return read


async def run(data_dir: Path, policies: Path, interval: float, parquet: ParquetSink | None = None,
              idle_release: float = 0.0, inherited: tuple[int, int] | None = None) -> int:
    """`idle_release`: seconds without work after which DuckDB is let go (0: never);
    `inherited`: the lock and socket descriptors of this process before such a release."""
    fd = try_lock(data_dir) if inherited is None else inherited[0]
    if fd is None:
        log.info("another process owns the usage ledger in %s", data_dir)
        return 0
    owner = Owner(data_dir, fd, retention_reader(policies), parquet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the socket listens: a SIGTERM from then
        loop.add_signal_handler(sig, stop.set)  # on is a clean stop (final ingest), not a kill
    await owner.start(None if inherited is None else inherited[1])
    parent = os.getppid()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if os.getppid() != parent:  # the server is gone: finish up
            stop.set()
        try:
            await owner.ingest_due()
        except Exception:
            log.exception("usage ingest failed; retrying")
        if idle_release and owner.idle_for() > idle_release and not stop.is_set():
            release_duckdb(*await owner.release())
    await owner.close()  # final ingest, then release the lock
    return 0


def release_duckdb(lock_fd: int, listen_fd: int) -> None:
    """Give DuckDB's memory back (~75 MB of an owner's ~100 MB; closing the connection returns
    almost none of it, the library stays mapped) by replacing this process image with a fresh
    one: same pid (the supervisor's child), same lock, same listening socket. The new image
    loads DuckDB again on its next row or request (~0.3 s, off the request path)."""
    argv = [a for a in sys.argv[1:] if not a.startswith("--inherit=")]
    log.info("usage ledger idle: letting DuckDB go (pid %d stays the owner)", os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "gateway.usage.ingester", *argv,
                              f"--inherit={lock_fd},{listen_fd}"])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.usage.ingester")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--policies", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--idle-release", type=float, default=0.0, metavar="SECONDS",
                        help="let DuckDB's memory go after this long without rows or requests (0: never)")
    parser.add_argument("--inherit", type=_fd_pair, help=argparse.SUPPRESS)  # set by release_duckdb
    parser.add_argument("--node-id", help="this machine's name in the Parquet files (default: settings)")
    parser.add_argument("--parquet-dir", type=Path, help="also write usage as Parquet here")
    parser.add_argument("--parquet-interval", type=float, help="seconds between Parquet files")
    parser.add_argument("--no-parquet", action="store_true",
                        help="no Parquet sink, whatever the settings say (`tollgate serve` passes it when "
                        "it has read them: this process then does not load them again)")
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("TOLLGATE_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The ledger's work gives way to the relay thread by thread (usage/turns.py): the console's
    # and admin queries at nice 10 (on a small box a console page's scans of a big ledger
    # otherwise take the workers' cores: benchmarks/bench_console.py), the periodic ingest at 19;
    # only rows left waiting too long are ingested at this process's own priority.
    if args.no_parquet:
        return asyncio.run(run(args.data_dir, args.policies, args.interval, None, args.idle_release,
                               args.inherit))
    from ..settings import ServeSettings

    flags = {
        name: value
        for name, value in {
            "node_id": args.node_id,
            "usage_parquet_dir": args.parquet_dir,
            "usage_parquet_interval_s": args.parquet_interval,
        }.items()
        if value is not None
    }
    from pydantic import ValidationError

    try:
        sink = sink_from_settings(ServeSettings(**flags))
    except ValidationError as exc:
        print(f"error: bad usage settings\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args.data_dir, args.policies, args.interval, sink, args.idle_release,
                           args.inherit))


def _fd_pair(text: str) -> tuple[int, int]:
    lock_fd, listen_fd = (int(part) for part in text.split(","))
    return lock_fd, listen_fd


if __name__ == "__main__":
    raise SystemExit(main())
