"""`tollgate providers test | models`: a provider's keys tested, its model list fetched and
compared with the bundle, from the command line (the bundle read as `tollgate check` reads it;
the gateway need not run). Keys are printed masked, upstream messages pass the redactor."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..config import BundleError, Snapshot, load_snapshot
from ..providers.transport.clients import make_upstream_client
from .discover import DiscoveryError, upstream_models
from .drift import drift, listed_models, snippet
from .probe import ProbeResult, probe_provider


def add_commands(sub: Any) -> None:
    providers = sub.add_parser("providers", help="test providers, compare their model lists").add_subparsers(
        dest="providers_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--policies", default="policies", help="the policy bundle directory")
    common.add_argument("--env-file", metavar="PATH", help="NAME=value file merged over the environment")
    common.add_argument("--format", choices=["table", "json"], default="table")

    test = providers.add_parser("test", parents=[common],
                                help="send a minimal request with each API key (exit 1 when any fails)")
    test.add_argument("ids", nargs="*", metavar="ID", help="provider ids (default: all)")
    test.add_argument("--model", help="the model to test (default: the first chat and embedding model)")
    test.add_argument("--stream", action="store_true", help="test chat streaming")
    test.set_defaults(func=test_command)

    models = providers.add_parser("models", parents=[common],
                                  help="the upstream's model list against the bundle, and a TOML snippet")
    models.add_argument("id", metavar="ID", help="provider id")
    models.add_argument("--check", action="store_true", help="exit 1 on drift (for a scheduled CI job)")
    models.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                        help="upstream models not to report as unlisted (repeatable), e.g. 'dall-e*'")
    models.set_defaults(func=models_command)


def _snapshot(args: argparse.Namespace) -> Snapshot | None:
    try:
        return load_snapshot(args.policies, env_file=args.env_file)
    except BundleError as exc:
        print(exc, file=sys.stderr)
        return None


def test_command(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    if snap is None:
        return 1
    unknown = [i for i in args.ids if i not in snap.providers]
    if unknown:
        print(f"unknown provider(s): {', '.join(unknown)} (known: {', '.join(sorted(snap.providers))})",
              file=sys.stderr)
        return 1
    ids = args.ids or sorted(snap.providers)
    results = asyncio.run(_test(snap, ids, args.model, args.stream))
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(table(results))
    return 0 if all(r.ok or r.skipped for r in results) else 1


async def _test(snap: Snapshot, ids: list[str], model: str | None, stream: bool) -> list[ProbeResult]:
    client = make_upstream_client("h1", 16)
    try:
        batches = await asyncio.gather(*(probe_provider(snap.providers[i], client, snap.redactor, model=model,
                                                        stream=stream) for i in ids))
    finally:
        await client.aclose()
    return [r for batch in batches for r in batch]


def table(results: list[ProbeResult]) -> str:
    head = ("PROVIDER", "KEY", "MODEL", "KIND", "STATUS", "LATENCY", "TTFB", "TOKENS", "RESULT")
    rows = [head]
    for r in results:
        tokens = "-" if r.prompt_tokens is None else f"{r.prompt_tokens}+{r.completion_tokens or 0}"
        result = "skipped: " + (r.error or "") if r.skipped else "ok" if r.ok else f"FAILED: {r.error}"
        rows.append((r.provider, f"#{r.key_index} {r.key}", r.model, r.kind + (" stream" if r.stream else ""),
                     str(r.status or "-"), _ms(r.latency_ms), _ms(r.ttfb_ms), tokens, result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def models_command(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    if snap is None:
        return 1
    provider = snap.providers.get(args.id)
    if provider is None:
        print(f"unknown provider: {args.id} (known: {', '.join(sorted(snap.providers))})", file=sys.stderr)
        return 1
    try:
        offered = asyncio.run(_models(snap, args.id))
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    d = drift(snap, provider, offered, args.ignore)
    paste = snippet(d, listed_models(provider))
    if args.format == "json":
        print(json.dumps({**d.as_dict(), "snippet": paste}, indent=2))
    else:
        print(f"provider {d.provider}: {len(d.offered)} model(s) offered upstream")
        for title, names in (("listed in the bundle but not offered upstream", d.not_offered),
                             ("offered upstream but not listed", d.not_listed),
                             ("listed without a price", d.unpriced)):
            print(f"\n{title} ({len(names)}):" + "".join(f"\n  {n}" for n in names))
        print("\n# ---- paste into the bundle ----\n" + paste, end="")
    return 1 if args.check and d.drifted else 0


async def _models(snap: Snapshot, pid: str) -> list[str]:
    client = make_upstream_client("h1", 4)
    try:
        return await upstream_models(snap.providers[pid], client, snap.redactor)
    finally:
        await client.aclose()
