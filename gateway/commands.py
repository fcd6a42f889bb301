"""Implementations of the policy sub-commands: check, keys new, schema, explain."""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import msgspec

from .config import BundleError, Snapshot, load_snapshot
from .config.snapshot import Route
from .config.types import BundleFile
from .core.family import family_of
from .errors import GatewayError
from .policy.context import Facts, KeyView, RequestView
from .policy.rules import Decision, RuleFailed


def check(args: argparse.Namespace) -> int:
    try:
        snap = load_snapshot(args.directory, allow_missing_env=args.allow_missing_env, env_file=args.env_file)
    except BundleError as exc:
        if args.format == "json":
            print(
                json.dumps(
                    {"valid": False, "problems": [msgspec.to_builtins(p) for p in exc.problems]}, indent=2
                )
            )
        else:
            for problem in exc.problems:
                print(problem)
            print(f"\n{len(exc.problems)} problem(s); bundle is invalid", file=sys.stderr)
        return 1
    summary = {
        "valid": True,
        "revision": snap.revision,
        "providers": len(snap.providers),
        "models": len(snap.routes),
        "keys": len(snap.keys_by_hash),
        "rules": len(snap.rules.rules),
        "warnings": list(snap.warnings),
    }
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        for warning in snap.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"ok: {args.directory} revision {snap.revision}: {summary['providers']} providers, "
            f"{summary['models']} models, {summary['keys']} keys, {summary['rules']} rules"
        )
    return 0


def keys_new(args: argparse.Namespace) -> int:
    secret = "tg-" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    print(f"key (shown once, store it now): {secret}\n")
    section = "admin_key" if args.admin else "key"
    print(f"[[{section}]]")
    print(f'id = "{args.id}"')
    print(f'hash = "sha256:{digest}"')
    if args.group and not args.admin:
        print(f'group = "{args.group}"')
    return 0


def _clean_descriptions(node: Any) -> None:
    """Docstrings keep their indentation before Python 3.13: the schema must not depend on it."""
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            node["description"] = inspect.cleandoc(node["description"])
        for value in node.values():
            _clean_descriptions(value)
    elif isinstance(node, list):
        for value in node:
            _clean_descriptions(value)


def policy_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(BundleFile)
    _clean_descriptions(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tollgate policy bundle file (schema = 1)"
    return schema


def schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


def explain(args: argparse.Namespace) -> int:
    try:
        snap = load_snapshot(args.policies, allow_missing_env=args.allow_missing_env)
    except BundleError as exc:
        print(exc, file=sys.stderr)
        return 1
    key = snap.keys_by_id.get(args.key)
    if key is None:
        print(f'no key with id "{args.key}"', file=sys.stderr)
        return 1
    bad = [item for item in args.metadata if "=" not in item]
    if bad:
        print(f"--metadata takes KEY=VALUE, not {bad[0]!r}", file=sys.stderr)
        return 2
    metadata = dict(item.split("=", 1) for item in args.metadata)
    request = RequestView(
        model=args.model,
        endpoint=args.endpoint,
        stream=args.stream,
        message_count=args.messages,
        max_tokens=args.max_tokens,
        metadata=metadata,
    )
    facts = Facts(request, KeyView(key.id, key.group.id if key.group else "", list(key.tags)))
    print(f"key {key.id}: group {key.group.id if key.group else '-'}, tags {list(key.tags)}")
    if not key.allows_model(args.model):  # checked before the rules, as the gateway does
        print(f"DENIED: key {key.id} may not use model {args.model}")
        return 0
    try:
        decision = snap.rules.evaluate(facts.lookup)
    except RuleFailed as exc:
        print(f"rule error (request refused): {exc}")
        return 0
    print(f"rules matched: {', '.join(decision.matched) or 'none'}")
    if decision.deny is not None:
        print(f"DENIED by rule {decision.deny_rule}: {decision.deny}")
        return 0
    model = decision.route or decision.set_model or args.model
    if model != args.model:
        print(f"model rewritten: {args.model} -> {model}")
    for name, value in decision.headers:
        print(f"upstream header: {name}: {value}")
    if decision.tags:
        print(f"tags: {', '.join(decision.tags)}")
    _print_route(snap, model)
    if args.body is not None and model in snap.routes:
        _print_bodies(snap, snap.routes[model], decision, args)
    return 0


def _print_bodies(snap: Snapshot, route: Route, decision: Decision, args: argparse.Namespace) -> None:
    """Each target's upstream body as the gateway would send it: translated, then shaped
    (the alias's reasoning default, the rules' set_body, the provider's body table)."""
    from .providers.codecs import NoCodec, codec_for  # only here: `tollgate check` stays light
    from .providers.translate.codec import Outgoing
    from .providers.translate.shaping import shape

    endpoint = args.endpoint.removeprefix("/v1/").strip("/")
    for t in (t for tier in route.tiers for t in tier):
        provider = snap.providers[t.provider]
        out = Outgoing(endpoint=endpoint, body=args.body.encode(), model=args.model, upstream_model=t.model,
                       stream=args.stream, client_wants_usage=False, provider=provider)
        try:
            upstream, body = codec_for("openai", provider.kind, endpoint).request(out)
            body = shape(body, family_of(provider.kind), upstream, reasoning=route.reasoning,
                         rules=decision.body, provider=provider.body)
        except (NoCodec, GatewayError) as exc:
            print(f"upstream body for {t.provider}/{t.model}: cannot be built: {exc}")
            continue
        print(f"upstream body for {t.provider}/{t.model} ({upstream}): {snap.redactor.text(body.decode())}")


def _print_route(snap: Snapshot, model: str) -> None:
    route = snap.routes.get(model)
    if route is None:
        print(f"no route: unknown model {model}")
        return
    for name in (route.name, *route.fallbacks):
        r = snap.routes[name]
        label = "route" if name == route.name else "fallback"
        print(f"{label} {name} ({'alias' if r.is_alias else 'model'}, {r.strategy}):")
        for tier in r.tiers:
            total = sum(t.weight for t in tier) or 1
            for t in tier:
                price = snap.price_for(t.provider, t.model)
                rates = f"${price.rates.input}/${price.rates.output} per Mtok" if price else "no price"
                print(
                    f"  priority {t.priority}: {t.provider}/{t.model} "
                    f"weight {t.weight} ({100 * t.weight / total:.0f}%), {rates}"
                )
