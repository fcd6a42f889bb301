"""`tollgate credits add | list` and `tollgate codes new`: prepaid credits from the command line.

Entries go through the ledger owner (the running gateway's, or this process as the owner for
one call when none runs), checkpointed before the command prints. Keys and groups are checked
against the policy bundle. A running gateway sees a top-up made here within a few seconds
(billing/credits.py: RESYNC_S), and at once when the key would otherwise be refused.
docs/credits.md."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from .cli import DATA_DIR_HELP, _run, print_result
from .codes import code_hash, new_code
from .credits_store import CreditError, check_key_id, parse_usd
from .lock import LEDGER_FILE

MAX_CODES = 10_000


def add_commands(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help=DATA_DIR_HELP)
    common.add_argument("--config", help="settings file (TOML) of `tollgate serve`: data_dir, policies")
    common.add_argument("--policies", help="policy bundle directory, to check key and group ids "
                        "(default as for serve: policies)")

    credits = sub.add_parser("credits", help="prepaid credits: top up, list").add_subparsers(
        dest="credits_command", required=True)
    add = credits.add_parser("add", parents=[common], help="book a top-up (or adjustment, refund) for a key")
    add.add_argument("key", help="key id")
    add.add_argument("usd", help="amount in USD, e.g. 10 or 12.50 (negative only with --kind adjust)")
    add.add_argument("--note", required=True, help="why (shown in the credit history)")
    add.add_argument("--reference", help="your idempotency reference (e.g. an invoice id): booked once")
    add.add_argument("--kind", choices=["topup", "adjust", "refund"], default="topup")
    add.set_defaults(func=add_command)

    listing = credits.add_parser("list", parents=[common], help="credit entries (newest first) and balances")
    listing.add_argument("key", nargs="?", help="only this key (with its balance)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    listing.set_defaults(func=list_command)

    codes = sub.add_parser("codes", help="redemption codes").add_subparsers(
        dest="codes_command", required=True)
    new = codes.add_parser("new", parents=[common], help="create codes: printed once, only hashes are stored")
    new.add_argument("--usd", required=True, help="value of each code in USD")
    new.add_argument("--count", type=int, default=1, help=f"how many (at most {MAX_CODES})")
    new.add_argument("--expires", help="ISO date or time after which the codes are refused (UTC if no zone)")
    new.add_argument("--group", help="only keys of this group may redeem them")
    new.add_argument("--note", help="what the batch is for")
    new.add_argument("--batch", help="batch name (default: a timestamp)")
    new.set_defaults(func=codes_command)


def _settings(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """(data dir, policies) as `tollgate serve` would use them."""
    from pydantic import ValidationError

    from ..settings import CONFIG_ENV, ServeSettings

    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    try:
        settings = ServeSettings()
    except (ValidationError, OSError) as exc:
        print(f"error: cannot read the gateway settings: {exc}", file=sys.stderr)
        return None
    data_dir = Path(args.data_dir) if args.data_dir else Path(settings.data_dir)
    return data_dir, Path(args.policies) if args.policies else Path(settings.policies)


def _bundle(policies: Path) -> Any:
    from ..config import BundleError, load_snapshot

    try:
        return load_snapshot(policies, allow_missing_env=True)
    except BundleError as exc:
        print(f"error: the policy bundle in {policies} is invalid ({len(exc.problems)} problem(s)); "
              "run `tollgate check`", file=sys.stderr)
        return None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def add_command(args: argparse.Namespace) -> int:
    found = _settings(args)
    if found is None:
        return 1
    data_dir, policies = found
    try:
        key_id = check_key_id(args.key)
        usd = parse_usd(args.usd, allow_negative=args.kind == "adjust", what="USD")
    except CreditError as exc:
        return _fail(exc.message)
    snap = _bundle(policies)
    if snap is None:
        return 1
    if key_id not in snap.keys_by_id:
        return _fail(f"unknown key {key_id!r}: no such key in the policy bundle {policies}")
    answer = _run(data_dir, {"op": "credit_add", "key_id": key_id, "usd": str(usd), "kind": args.kind,
                             "note": args.note, "reference": args.reference, "actor": _actor(),
                             "revision": snap.revision})
    if answer is None:
        return 1
    entry = answer["entry"]
    what = "already booked, nothing added" if answer["duplicate"] else "booked"
    print(f"{what}: entry {entry['id']}, {entry['kind']} of {entry['amount_usd']} USD to key {key_id} "
          f"(reference {entry['reference'] or '-'}); balance {answer['balance']} USD")
    return 0


def list_command(args: argparse.Namespace) -> int:
    found = _settings(args)
    if found is None:
        return 1
    data_dir = found[0]
    if not any(p.exists() for p in (data_dir / LEDGER_FILE, data_dir / "spool")):
        return _fail(f"no ledger at {data_dir.absolute() / LEDGER_FILE} (pass --data-dir)")
    request: dict[str, Any] = {"op": "credit_list", "limit": args.limit}
    if args.key is not None:
        try:
            request["key_id"] = check_key_id(args.key)
        except CreditError as exc:
            return _fail(exc.message)
    answer = _run(data_dir, request)
    if answer is None:
        return 1
    columns = ["id", "created_at", "key_id", "kind", "amount_usd", "reference", "note", "actor"]
    rows = [[e[c] for c in columns] for e in answer["entries"]]
    print_result({"columns": columns, "rows": rows}, args.format)
    if args.key is not None and args.format == "table":
        total = _run(data_dir, {"op": "credit_total", "key_id": args.key})
        if total is None:
            return 1
        print(f"key {args.key}: credits {total['credits']} USD, spent {total['spent']} USD, "
              f"balance {total['balance']} USD")
    return 0


def _expiry(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    stamp = dt.datetime.fromisoformat(text)
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def codes_command(args: argparse.Namespace) -> int:
    found = _settings(args)
    if found is None:
        return 1
    data_dir, policies = found
    if not 1 <= args.count <= MAX_CODES:
        return _fail(f"--count must be 1..{MAX_CODES}")
    try:
        usd = parse_usd(args.usd, what="--usd")
        expires = _expiry(args.expires)
    except CreditError as exc:
        return _fail(exc.message)
    except ValueError:
        return _fail(f"--expires {args.expires!r} is not an ISO date or time (e.g. 2027-01-31)")
    if expires is not None and expires <= dt.datetime.now(dt.UTC):
        return _fail(f"--expires {args.expires} is in the past")
    if args.group is not None:
        snap = _bundle(policies)
        if snap is None:
            return 1
        if args.group not in snap.groups:
            return _fail(f"unknown group {args.group!r}: no such group in the policy bundle {policies}")
    codes = [new_code() for _ in range(args.count)]
    batch = args.batch or dt.datetime.now(dt.UTC).strftime("codes-%Y%m%dT%H%M%SZ")
    answer = _run(data_dir, {"op": "codes_add", "hashes": [code_hash(c) for c in codes], "usd": str(usd),
                             "batch": batch, "group": args.group, "note": args.note, "actor": _actor(),
                             "expires": expires.isoformat() if expires else None})
    if answer is None:
        return 1  # nothing stored: no code printed
    scope = f", group {args.group}" if args.group else ""
    scope += f", expire {expires.isoformat()}" if expires else ""
    print(f"# {answer['added']} codes of {usd} USD, batch {batch}{scope}: shown once, only their hashes "
          "are stored", file=sys.stderr)
    print("\n".join(codes))
    return 0
