"""`tollgate diff OLD NEW [--replay DAYS] [--format table|markdown|json]`.

Exit codes as `git diff --exit-code`: 0 no change, 2 changes, 1 an error (a side that does not
exist or does not pass check, a ledger that cannot be read)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import Replay, Report

if TYPE_CHECKING:
    from ..config import Snapshot

EXIT_SAME, EXIT_ERROR, EXIT_CHANGED = 0, 1, 2


def add_commands(sub: Any) -> None:
    diff = sub.add_parser(
        "diff",
        help="what a policy change does: access, routes, prices, rules; --replay re-prices the ledger "
        "(exit 0 no change, 2 changes, 1 error)",
    )
    diff.add_argument("old", help="bundle directory, or git revision of one (main:policies, HEAD~1)")
    diff.add_argument("new", help="bundle directory, or git revision of one")
    diff.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    diff.add_argument("--replay", type=int, metavar="DAYS", help="re-price the ledger's last DAYS under NEW")
    diff.add_argument("--data-dir", help="the gateway data directory of the ledger (default as for serve)")
    diff.add_argument("--config", help="settings file (TOML) of `tollgate serve`: its data_dir")
    diff.add_argument("--parquet", metavar="DIR", help="replay the Parquet files under DIR instead")
    diff.add_argument("--allow-missing-env", action="store_true",
                      help="do not fail on unset ${ENV} variables (CI without provider secrets)")
    diff.add_argument("--env-file", metavar="PATH", help="NAME=value file merged over the environment")
    diff.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .sides import SideError

    if args.replay is not None and args.replay < 1:
        print("error: --replay takes a number of days >= 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        report = build(args)
    except SideError as exc:
        print(f"error: {exc.spec}: {exc.message}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_ERROR
    except _Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    from .render import render

    render(report, args.format, sys.stdout)
    return EXIT_CHANGED if report.changed or _replay_moved(report) else EXIT_SAME


class _Failed(Exception):
    pass


def _replay_moved(report: Report) -> bool:
    r = report.replay
    return r is not None and (r.total.delta != 0 or bool(r.denied) or bool(r.rerouted))


def build(args: argparse.Namespace, now: datetime | None = None) -> Report:
    from .access import access_changes, rule_changes
    from .bundle import bundle_changes
    from .sides import load_side, materialise, relative_in_repo

    now = now or datetime.now(UTC)
    cwd = Path.cwd()
    dirs = (relative_in_repo(s, cwd) for s in (args.new, args.old) if Path(s).is_dir())
    default_path = next(dirs, "policies")  # what a bare `REV` side means
    options = {"allow_missing_env": args.allow_missing_env, "env_file": args.env_file}
    with materialise(args.old, default_path, cwd) as (old_dir, old_label), \
            materialise(args.new, default_path, cwd) as (new_dir, new_label):
        old = load_side(args.old, old_dir, old_label, **options)
        new = load_side(args.new, new_dir, new_label, **options)
    a, b = old.snapshot, new.snapshot
    changes = [*bundle_changes(a, b, now), *access_changes(a, b, now), *rule_changes(a, b)]
    report = Report(old={"label": old.label, "revision": old.snapshot.revision},
                    new={"label": new.label, "revision": new.snapshot.revision}, changes=changes)
    if args.replay is not None:
        report.replay = _replay(args, old.snapshot, new.snapshot, now)
    return report


def _replay(args: argparse.Namespace, old: Snapshot, new: Snapshot, now: datetime) -> Replay:
    from .replay import ReplayError, owner_query, parquet_query, replay

    try:
        if not args.parquet:
            return replay(old, new, owner_query(_data_dir(args)), args.replay, now)
        query, close = parquet_query(Path(args.parquet))
        try:
            return replay(old, new, query, args.replay, now)
        finally:
            close()
    except ReplayError as exc:
        raise _Failed(f"replay: {exc}") from None


def _data_dir(args: argparse.Namespace) -> Path:
    from ..usage.cli import ledger_dir

    found = ledger_dir(args)  # prints why there is none
    if found is None:
        raise _Failed("replay: no usage ledger to replay")
    return found
