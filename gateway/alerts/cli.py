"""`tollgate alerts test NAME`: one made-up event of the alert's kind, delivered to its webhook
as the gateway would (signature, retries), every attempt printed and, with a data directory,
logged to `<data-dir>/alerts.jsonl`. Exit 1 when the webhook never accepted it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from ..config import BundleError, load_snapshot
from ..config.alerts import AlertRuntime
from ..providers.transport.clients import make_upstream_client
from ..redact import Redactor
from .events import sample
from .log import AlertLog
from .webhook import deliver, describe


def add_commands(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="the bundle's [[alert]] webhooks").add_subparsers(
        dest="alerts_command", required=True)
    test = alerts.add_parser("test", help="send a sample event to one alert's webhook")
    test.add_argument("name", metavar="NAME", help="the alert's id")
    test.add_argument("--policies", default="policies", help="the policy bundle directory")
    test.add_argument("--env-file", metavar="PATH", help="NAME=value file merged over the environment")
    test.add_argument("--data-dir", help="log the attempts to <data-dir>/alerts.jsonl (default: "
                                         "TOLLGATE_DATA_DIR when set, else not logged)")
    test.set_defaults(func=test_command)


def test_command(args: argparse.Namespace) -> int:
    try:
        snap = load_snapshot(args.policies, env_file=args.env_file)
    except BundleError as exc:
        print(exc, file=sys.stderr)
        return 1
    alert = next((a for a in snap.alerts if a.id == args.name), None)
    if alert is None:
        known = ", ".join(a.id for a in snap.alerts) or "none"
        print(f"no alert `{args.name}` in the bundle (alerts: {known})", file=sys.stderr)
        return 1
    data_dir = args.data_dir or os.environ.get("TOLLGATE_DATA_DIR")
    log = AlertLog(Path(data_dir) if data_dir else None)
    ok = asyncio.run(_send(alert, log, snap.redactor))
    for row in log.rows:
        print(describe(row))
    print(f"alert {alert.id}: sample {alert.on} " + ("delivered" if ok else "NOT delivered"))
    return 0 if ok else 1


async def _send(alert: AlertRuntime, log: AlertLog, redactor: Redactor) -> bool:
    client = make_upstream_client("h1", 2)
    try:
        return await deliver(alert, sample(alert.on), client, log, redactor)
    finally:
        await client.aclose()
