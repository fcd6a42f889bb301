"""The `tollgate` command line: serve, check, explain, keys, schema, usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description="Tollgate LLM gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a policy bundle (exit 0 valid, 1 invalid)")
    check.add_argument("directory", nargs="?", default="policies")
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument(
        "--allow-missing-env",
        action="store_true",
        help="do not fail on unset ${ENV} variables (CI without provider secrets)",
    )
    check.add_argument(
        "--env-file", metavar="PATH", help="NAME=value file merged over the environment ${VAR} reads"
    )
    check.set_defaults(func=commands.check)

    keys = sub.add_parser("keys", help="client keys").add_subparsers(dest="keys_command", required=True)
    new = keys.add_parser("new", help="print a fresh key once, and its TOML entry")
    new.add_argument("--id", required=True)
    new.add_argument("--group")
    new.add_argument("--admin", action="store_true", help="an admin key ([[admin_key]])")
    new.set_defaults(func=commands.keys_new)

    schema = sub.add_parser("schema", help="write the policy JSON Schema")
    schema.add_argument("--out", default="schemas/policy.schema.json", help="file, or - for stdout")
    schema.set_defaults(func=commands.schema)

    explain = sub.add_parser("explain", help="which rules match and where a request would go")
    explain.add_argument("--policies", default="policies")
    explain.add_argument("--key", required=True, help="key id")
    explain.add_argument("--model", required=True)
    explain.add_argument("--endpoint", default="/v1/chat/completions")
    explain.add_argument("--stream", action="store_true")
    explain.add_argument("--max-tokens", type=int, default=0)
    explain.add_argument("--messages", type=int, default=1, help="message count")
    explain.add_argument("--metadata", action="append", default=[], metavar="K=V")
    explain.add_argument("--allow-missing-env", action="store_true")
    explain.add_argument("--body", metavar="JSON",
                         help="a client request body (OpenAI format): print each target's upstream body")
    explain.set_defaults(func=commands.explain)

    for extend in _extensions():
        extend(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Sub-commands that live with their subsystem (serve, usage); imported here so that
    `tollgate check` does not load the server."""
    from .alerts.cli import add_commands as alerts_commands
    from .diff.command import add_commands as diff_commands
    from .ops.cli import add_commands as providers_commands
    from .serve.command import add_commands as serve_commands
    from .usage.cli import add_commands as usage_commands
    from .usage.credits_cli import add_commands as credits_commands

    return [serve_commands, usage_commands, diff_commands, credits_commands, providers_commands,
            alerts_commands]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `tollgate ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
