"""Bundle compile time: a generated bundle with 10,000 keys and 500 CEL rules through
`load_snapshot` (read, decode, merge, check, compile), the work a hot reload does.

Run: .venv/bin/python -m benchmarks.bench_compile [--keys N] [--rules N] [--runs N] [--profile]
Prints the median wall-clock time of cold runs (target: under 2 s) and their CPU time, which is
steadier on a busy machine, plus the first load of the process (it also builds cel-python's
Environment, ~150 ms). The bundle is split over several files the way an operator would split
it (providers, groups, keys in batches of 1,000, rules). Also the reload of an unchanged bundle,
which reuses the parsed CEL programs.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from gateway.config import load_snapshot
from gateway.policy import cel

GROUPS = ("free", "pro", "enterprise", "trial")
MODELS = ("m-small", "m-large", "gpt-4o", "gpt-4o-mini", "claude-haiku-4-5", "legacy")

# Rule templates; `{i}` makes every rule's expression distinct, as in a real bundle where rules
# differ, so nothing is shared between them at compile time.
TEMPLATES = (
    ('key.group == "free" && request.model.startsWith("gpt-4") && request.max_tokens > {i}',
     'deny = "no gpt-4 on free"'),
    ('request.message_count > {i}', 'route = "long"'),
    ('request.model == "legacy-{i}"', 'set_model = "m-small"'),
    ('key.group == "pro" && request.stream && request.max_tokens < {i}', 'add_tags = ["pro-stream"]'),
    ('"beta-{i}" in key.tags', 'set_headers = {{ "x-beta" = "{i}" }}'),
    ('has(request.metadata.team) && request.metadata.team == "t{i}"', 'deny = "team blocked"'),
    ('key.tags.exists(t, t == "batch-{i}")', 'set_headers = {{ "x-priority" = "low" }}'),
    ('request.model.matches("^o[0-9]+-{i}") || usage.budget_fraction > 0.{i}', 'add_tags = ["r{i}"]'),
    ('request.endpoint == "/v1/images/generations" && key.id != "k{i}"', 'deny = "images need pro"'),
    ('size(key.tags) > {i} && now.getHours() < 6', 'add_tags = ["night"]'),
)


def write_bundle(directory: Path, keys: int, rules: int) -> None:
    models = ", ".join(f'"{m}"' for m in MODELS)
    (directory / "providers.toml").write_text(
        'schema = 1\n\n[settings]\npricing = "strict"\n\n'
        f'[[provider]]\nid = "mock-a"\nkind = "mock"\nmodels = [{models}]\n\n'
        f'[[provider]]\nid = "mock-b"\nkind = "mock"\nmodels = [{models}]\npriority = 1\n\n'
        '[model.long]\ntargets = [{ provider = "mock-a", model = "m-large" }]\nfallbacks = ["m-small"]\n\n'
        + "".join(f'[price."{m}"]\ninput = 1.0\noutput = 2.0\n\n' for m in MODELS)
    )
    (directory / "groups.toml").write_text(
        "schema = 1\n\n"
        + "".join(
            f'[group.{g}]\nmodels = ["gpt-*", "m-*", "long"]\nlimits = {{ rpm = 600, tpm = 100000 }}\n'
            f'budget = {{ usd = 100, period = "month" }}\n\n'
            for g in GROUPS
        )
    )
    batch = 1000
    for start in range(0, keys, batch):
        parts = ["schema = 1\n"]
        for i in range(start, min(start + batch, keys)):
            digest = hashlib.sha256(f"tg-key-{i}".encode()).hexdigest()
            allow = '\nmodels = ["gpt-4o*", "long"]' if i % 5 == 0 else ""
            parts.append(
                f'\n[[key]]\nid = "k{i}"\nhash = "sha256:{digest}"\ngroup = "{GROUPS[i % 4]}"\n'
                f'tags = ["team-{i % 50}", "cc-{i % 7}"]{allow}\n'
                f"limits = {{ rpm = {60 + i % 100}, concurrency = 10 }}\n"
            )
        (directory / f"keys-{start // batch:03d}.toml").write_text("".join(parts))
    parts = ["schema = 1\n"]
    for i in range(rules):
        when, action = TEMPLATES[i % len(TEMPLATES)]
        n = i // len(TEMPLATES) + 1
        parts.append(f"\n[[rule]]\nid = \"r{i}\"\nwhen = '{when.format(i=n)}'\n{action.format(i=n)}\n")
    (directory / "rules.toml").write_text("".join(parts))


def measure(directory: Path, runs: int, cold: bool = True) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each run; `cold` forgets the parsed CEL programs first (a
    reload reuses those of unchanged rules)."""
    wall, cpu = [], []
    for _ in range(runs):
        if cold:
            cel._PROGRAMS.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        snap = load_snapshot(directory, env={})
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert len(snap.keys_by_hash) > 0
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top functions of one run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-compile-") as tmp:
        directory = Path(tmp)
        write_bundle(directory, args.keys, args.rules)
        files = list(directory.glob("*.toml"))
        size = sum(p.stat().st_size for p in files)
        (first,), _ = measure(directory, 1)  # includes the one-off CEL Environment
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(load_snapshot, directory, env={})
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        wall, cpu = measure(directory, args.runs)
        warm_wall, warm_cpu = measure(directory, args.runs, cold=False)
    print(f"bundle: {args.keys} keys, {args.rules} rules, {size / 1e6:.1f} MB of TOML in {len(files)} files")
    print(f"first load in this process: {first:.3f} s")
    print(
        f"load_snapshot: median {statistics.median(wall):.3f} s wall of {args.runs} "
        f"(min {min(wall):.3f}, max {max(wall):.3f}), {statistics.median(cpu):.3f} s CPU; "
        "target < 2 s"
    )
    print(f"reload with the rules unchanged (parsed CEL reused): median {statistics.median(warm_wall):.3f} s wall, "
          f"{statistics.median(warm_cpu):.3f} s CPU")


if __name__ == "__main__":
    main()
