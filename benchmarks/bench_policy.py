"""Per-request policy cost: 20 CEL rules evaluated for a stream of realistic requests.

Run: .venv/bin/python -m benchmarks.bench_policy
Reports µs per request (median of batches) for the memoized path, and the cost of a cold
evaluation (cel-python itself) for comparison.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path

from gateway.config import load_snapshot
from gateway.policy.context import Facts, KeyView, RequestView

RULES = [
    ('key.group == "free" && request.model.startsWith("gpt-4")', 'deny = "no gpt-4 on free"'),
    ('request.max_tokens > 32768', 'deny = "max_tokens too large"'),
    ('request.model == "legacy"', 'set_model = "m-small"'),
    ('request.message_count > 40', 'route = "long"'),
    ('key.group == "pro" && request.stream', 'add_tags = ["pro-stream"]'),
    ('"beta" in key.tags', 'set_headers = { "x-beta" = "1" }'),
    ('request.endpoint == "/v1/embeddings" && key.group == "free"', 'add_tags = ["free-embed"]'),
    ('request.model.endsWith("-preview") && key.group != "enterprise"', 'deny = "previews are enterprise only"'),
    ('has(request.metadata.team) && request.metadata.team == "blocked"', 'deny = "team blocked"'),
    ('request.max_tokens > 8000 && key.group == "free"', 'deny = "free tier max 8000 tokens"'),
    ('key.group == "enterprise"', 'add_tags = ["ent"]'),
    ('request.model in ["m-small", "m-large"] && key.group == "free"', 'add_tags = ["free-mock"]'),
    ('request.message_count > 100', 'deny = "conversation too long"'),
    ('key.tags.exists(t, t == "batch")', 'set_headers = { "x-priority" = "low" }'),
    ('request.model.matches("^o[0-9]")', 'add_tags = ["reasoning"]'),
    ('key.group == "trial" && request.stream', 'deny = "no streaming on trial"'),
    ('request.model == "m-large" && key.group == "free"', 'route = "small"'),
    ('size(key.tags) > 5', 'add_tags = ["many-tags"]'),
    ('request.endpoint == "/v1/images/generations" && key.group != "pro"', 'deny = "images need pro"'),
    ('key.group == "pro" && request.max_tokens > 0', 'add_tags = ["pro-capped"]'),
]


def bundle_text(keys: int) -> str:
    parts = ['schema = 1\n[settings]\npricing = "lenient"\n',
             '[[provider]]\nid = "mock"\nkind = "mock"\nmodels = ["m-small", "m-large", "legacy", "gpt-4o"]\n',
             '[model.long]\ntargets = [{ provider = "mock", model = "m-large" }]\n',
             '[model.small]\ntargets = [{ provider = "mock", model = "m-small" }]\n']
    for g in ("free", "pro", "enterprise", "trial"):
        parts.append(f"[group.{g}]\n")
    for i in range(keys):
        digest = hashlib.sha256(f"key-{i}".encode()).hexdigest()
        group = ("free", "pro", "enterprise", "trial")[i % 4]
        beta = ', "beta"' if i % 10 == 0 else ""
        parts.append(f'[[key]]\nid = "k{i}"\nhash = "sha256:{digest}"\ngroup = "{group}"\n'
                     f'tags = ["t{i % 7}"{beta}]\n')
    for i, (when, action) in enumerate(RULES):
        parts.append(f"[[rule]]\nid = \"r{i}\"\nwhen = '{when}'\n{action}\n")
    return "\n".join(parts)


def requests(snapshot: object, n: int, rng: random.Random) -> list[Facts]:
    keys = list(snapshot.keys_by_id.values())  # type: ignore[attr-defined]
    out = []
    for _ in range(n):
        key = rng.choice(keys)
        request = RequestView(model=rng.choice(["m-small", "m-large", "gpt-4o"]),
                              endpoint="/v1/chat/completions", stream=rng.random() < 0.5,
                              message_count=rng.randint(1, 12), max_tokens=rng.choice([0, 256, 1024]),
                              metadata={"team": rng.choice(["a", "b"])})
        out.append(Facts(request, KeyView(key.id, key.group.id, list(key.tags))))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bundle.toml").write_text(bundle_text(1000))
        snap = load_snapshot(tmp)
    rules = snap.rules
    rng = random.Random(7)
    stream = requests(snap, 20_000, rng)
    for facts in stream[:5000]:  # warm the memo as a running gateway would be
        rules.evaluate(facts.lookup)
    batches = []
    for start in range(0, len(stream), 1000):
        batch = stream[start:start + 1000]
        t = time.perf_counter_ns()
        for facts in batch:
            rules.evaluate(facts.lookup)
        batches.append((time.perf_counter_ns() - t) / len(batch) / 1000)
    cold = []
    for facts in stream[:200]:
        t = time.perf_counter_ns()
        for rule in rules.rules:
            rule.expr.run(tuple(facts.lookup(r, f) for r, f in rule.expr.refs))
        cold.append((time.perf_counter_ns() - t) / 1000)
    print(f"rules: {len(rules.rules)}, keys: {len(snap.keys_by_id)}, distinct memo refs: {len(rules.refs)}")
    print(f"policy per request (memoized, realistic mix): median {statistics.median(batches):.2f} µs, "
          f"max batch {max(batches):.2f} µs")
    print(f"policy per request (cold, cel-python for all 20 rules): median {statistics.median(cold):.0f} µs")


if __name__ == "__main__":
    main()
