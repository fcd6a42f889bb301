"""A realistic Tollgate policy bundle for the benchmarks, pointed at the mock upstream.

1,000 client keys (SHA-256 hashes) in four groups, 20 CEL rules (deny on group/model, add_tags,
set_headers, route on message_count, set_model), aliases with fallbacks, a price for every
model, group and key limits far above what a benchmark reaches, and one `openai-compatible`
provider at the mock. The benchmark request (alias `bench`, key 0, group `pro`) is denied or
rerouted by no rule; only tag rules match it.

Run: python -m benchmarks.bundle --mock-port 9100 --out benchmarks/.work/bundle
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

KEYS = 1000
GROUPS = ("free", "pro", "enterprise", "trial")
UPSTREAM_MODELS = ("mock-chat", "mock-chat-paced", "mock-large", "gpt-4o", "gpt-4o-mini", "o3-mini",
                   "legacy", "m-preview", "text-embedding-3-small")

RULES: list[tuple[str, str]] = [
    ('key.group == "free" && request.model.startsWith("gpt-4")', 'deny = "no gpt-4 on free"'),
    ('request.max_tokens > 32768', 'deny = "max_tokens too large"'),
    ('request.model == "legacy"', 'set_model = "mock-chat"'),
    ('request.message_count > 40', 'route = "long"'),
    ('key.group == "pro" && request.stream', 'add_tags = ["pro-stream"]'),
    ('"beta" in key.tags', 'set_headers = { "x-beta" = "1" }'),
    ('request.endpoint == "/v1/embeddings" && key.group == "free"', 'add_tags = ["free-embed"]'),
    ('request.model.endsWith("-preview") && key.group != "enterprise"', 'deny = "previews are enterprise only"'),
    ('has(request.metadata.team) && request.metadata.team == "blocked"', 'deny = "team blocked"'),
    ('request.max_tokens > 8000 && key.group == "free"', 'deny = "free tier max 8000 tokens"'),
    ('key.group == "enterprise"', 'add_tags = ["ent"]'),
    ('request.model in ["mock-chat", "mock-large"] && key.group == "free"', 'add_tags = ["free-mock"]'),
    ('request.message_count > 100', 'deny = "conversation too long"'),
    ('key.tags.exists(t, t == "batch")', 'set_headers = { "x-priority" = "low" }'),
    ('request.model.matches("^o[0-9]")', 'add_tags = ["reasoning"]'),
    ('key.group == "trial" && request.stream', 'deny = "no streaming on trial"'),
    ('request.model == "mock-large" && key.group == "free"', 'route = "small"'),
    ('size(key.tags) > 5', 'add_tags = ["many-tags"]'),
    ('request.endpoint == "/v1/images/generations" && key.group != "pro"', 'deny = "images need pro"'),
    ('key.group == "pro" && request.max_tokens > 0', 'add_tags = ["pro-capped"]'),
]


def key_secret(i: int) -> str:
    """The client key of index i (deterministic, so a cached bundle stays valid)."""
    return "tg-bench-" + hashlib.sha256(f"tollgate-bench-key-{i}".encode()).hexdigest()[:40]


def bench_key() -> str:
    return key_secret(0)


def providers_toml(mock_port: int) -> str:
    models = ", ".join(f'"{m}"' for m in UPSTREAM_MODELS)
    return f"""schema = 1

[settings]
pricing = "strict"
timezone = "UTC"

[[provider]]
id = "mock"
kind = "openai-compatible"
base_url = "http://127.0.0.1:{mock_port}/v1"
api_keys = ["sk-bench"]
models = [{models}]
timeouts = {{ connect = 5, read = 60, total = 120 }}

[model.bench]
description = "what the load generator calls"
targets = [{{ provider = "mock", model = "mock-chat" }}]
fallbacks = ["mock-large"]

[model.bench-paced]
description = "paced streams (one event every few ms) for the coalescing probe"
targets = [{{ provider = "mock", model = "mock-chat-paced" }}]

[model.long]
targets = [{{ provider = "mock", model = "mock-large" }}]

[model.small]
targets = [{{ provider = "mock", model = "gpt-4o-mini", weight = 3 }}, {{ provider = "mock", model = "mock-chat" }}]
strategy = "weighted"
"""


def prices_toml() -> str:
    parts = ["schema = 1\n"]
    for i, model in enumerate(UPSTREAM_MODELS):
        parts.append(f"[price.{model}]\ninput = {0.1 * (i + 1):.2f}\noutput = {0.4 * (i + 1):.2f}\n"
                     f"cached_input = {0.05 * (i + 1):.3f}\n")
    return "\n".join(parts)


def keys_toml() -> str:
    parts = ["schema = 1\n"]
    for g in GROUPS:
        parts.append(f"[group.{g}]\nprice_multiplier = 1.0\n"
                     f"limits = {{ rpm = 1000000000, tpm = 1000000000000 }}\n")
    for i in range(KEYS):
        digest = hashlib.sha256(key_secret(i).encode()).hexdigest()
        group = "pro" if i == 0 else GROUPS[i % 4]
        tags = ["bench"] if i == 0 else [f"t{i % 7}"] + (["beta"] if i % 10 == 0 else [])
        tag_list = ", ".join(f'"{t}"' for t in tags)
        extra = ""
        if i == 0:
            extra = ('budget = { usd = 1000000000, period = "month" }\n'
                     'limits = { rpm = 1000000000, tpm = 1000000000000 }\n')
        elif i % 50 == 0:
            extra = 'limits = { rpm = 600 }\n'
        parts.append(f'[[key]]\nid = "k{i:04d}"\nhash = "sha256:{digest}"\ngroup = "{group}"\n'
                     f"tags = [{tag_list}]\n{extra}")
    return "\n".join(parts)


def rules_toml() -> str:
    parts = ["schema = 1\n"]
    for i, (when, action) in enumerate(RULES):
        parts.append(f"[[rule]]\nid = \"r{i:02d}\"\nwhen = '{when}'\n{action}\n")
    return "\n".join(parts)


def write_bundle(out: Path, mock_port: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    files = {"providers.toml": providers_toml(mock_port), "prices.toml": prices_toml(),
             "keys.toml": keys_toml(), "rules.toml": rules_toml()}
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mock-port", type=int, default=9100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.work/bundle"))
    args = parser.parse_args(argv)
    print(write_bundle(args.out, args.mock_port))
    print(f"client key: {bench_key()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
