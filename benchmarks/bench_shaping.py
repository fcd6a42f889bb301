"""Per-request cost of request shaping (docs/providers.md): what an OpenAI chat request to an
OpenAI-compatible upstream costs in the relay's body building and candidate ordering, without
and with a body override, an alias reasoning default and affinity.

Run: .venv/bin/python -m benchmarks.bench_shaping
Reports µs per request (best of 7 batches) and each case's ratio to the plain path.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config import load_snapshot
from gateway.config.snapshot import Snapshot
from gateway.core.family import family_of
from gateway.policy.context import Facts, KeyView, RequestView
from gateway.providers.codecs import codec_for
from gateway.providers.keyring import KeyRing
from gateway.providers.translate.codec import Outgoing
from gateway.providers.translate.shaping import shape
from gateway.routing.affinity import affinity_key
from gateway.routing.select import RoundRobin, candidates

BUNDLE = """schema = 1
[settings]
pricing = "lenient"
[[provider]]
id = "plain"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["k1", "k2", "k3"]
models = ["m"]
[[provider]]
id = "shaped"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["k4", "k5", "k6"]
models = ["m2"]
body = { set = { user = "gw", response_format = { type = "json_object" } }, remove = ["logprobs"] }
[model.weighted]
targets = [{ provider = "plain", model = "m" }, { provider = "shaped", model = "m2" }]
[model.sticky]
targets = [{ provider = "plain", model = "m" }, { provider = "shaped", model = "m2" }]
affinity = 'request.metadata.user'
reasoning = "medium"
"""
MESSAGES = [{"role": "system", "content": "You are terse." * 20},
            {"role": "user", "content": "Summarise the following text. " * 30}]
BODY = json.dumps({"model": "m", "messages": MESSAGES, "temperature": 0.3, "metadata": {"user": "u1"}}).encode()
USERS = [f"user-{i}" for i in range(500)]


def timed(fn: Callable[[int], object], n: int = 2000, batches: int = 7) -> float:
    """The best batch's µs per call, of `batches` batches of `n` calls (the least disturbed by
    other processes on a shared machine)."""
    results = []
    for _ in range(batches):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        results.append((time.perf_counter() - start) / n * 1e6)
    return min(results)


def body_case(snap: Snapshot, provider_id: str, model: str, reasoning: str | None) -> Callable[[int], object]:
    provider = snap.providers[provider_id]
    codec = codec_for("openai", provider.kind, "chat/completions")
    family = family_of(provider.kind)
    body = BODY.replace(b'"model": "m"', f'"model": "{model}"'.encode())  # no model rewrite in any case

    def run(_: int) -> object:
        out = Outgoing(endpoint="chat/completions", body=body, model=model, upstream_model=model, stream=False,
                       client_wants_usage=False, provider=provider)
        endpoint, sent = codec.request(out)
        if provider.body or reasoning:  # as the relay decides
            sent = shape(sent, family, endpoint, reasoning=reasoning, provider=provider.body)
        return sent

    return run


def routing_case(snap: Snapshot, alias: str) -> Callable[[int], object]:
    route = snap.routes[alias]
    rng, rr, ring = random.Random(1), RoundRobin(), KeyRing(("k1", "k2", "k3"))
    key = KeyView("bench", "", [])

    def run(i: int) -> object:
        pinned = None
        if route.affinity is not None:
            request = RequestView(model=alias, endpoint="chat/completions", metadata={"user": USERS[i % 500]})
            pinned = affinity_key(route.affinity, Facts(request, key).lookup)
        first = next(candidates(snap, route, rng, rr, pinned))
        return first, next(ring.rotation(pinned))

    return run


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "b.toml").write_text(BUNDLE)
        snap = load_snapshot(Path(tmp))
    cases = {
        "body: pass-through (no override)": body_case(snap, "plain", "m", None),
        "body: provider body override": body_case(snap, "shaped", "m2", None),
        "body: alias reasoning default": body_case(snap, "plain", "m", "medium"),
        "routing: weighted (no affinity)": routing_case(snap, "weighted"),
        "routing: affinity (500 users)": routing_case(snap, "sticky"),
    }
    results = {name: timed(fn) for name, fn in cases.items()}
    base = {"body": results["body: pass-through (no override)"], "routing": results["routing: weighted (no affinity)"]}
    print(f"request body {len(BODY)} bytes; µs per request, best of 7 batches of 2000")
    for name, us in results.items():
        print(f"  {name:<36} {us:7.2f} µs   x{us / base[name.split(':')[0]]:.2f}")


if __name__ == "__main__":
    main()
