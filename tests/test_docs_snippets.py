"""Every fenced TOML block of README.md and docs/*.md passes `tollgate check`, and every
`tollgate ...` line of their sh/bash blocks parses with the real CLI parser, so the docs cannot
drift from the code.

A TOML block whose first line starts with `# fragment` is skipped. A block whose first line names
`tollgate serve --config` is a settings file and is loaded as one. Every other block is written as
`bundle.toml` (with `schema = 1` in front when the block is the body of a file and has none) into
a temporary directory, next to `context.toml`: the providers, prices, groups and aliases the docs'
examples refer to (`openai`, `anthropic`, `azure`, `mock`; groups `pro`, `free`; aliases `smart`,
`claude-long`), minus whatever the block itself defines. `${VAR}` references get dummy values
and `${file:...}` ones point into the temporary directory.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.config import BundleError, load_snapshot
from tests.gateway_process import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# What the docs' examples refer to; one entry per (table, id), dropped when the block defines it.
CONTEXT: dict[tuple[str, str], str] = {
    ("provider", "openai"): """[[provider]]
id = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_keys = ["sk-test"]
models = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"]
""",
    ("provider", "anthropic"): """[[provider]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_keys = ["sk-ant-test"]
models = ["claude-haiku-4-5"]
""",
    ("provider", "azure"): """[[provider]]
id = "azure"
kind = "azure"
base_url = "https://example.openai.azure.com"
api_keys = ["azure-test"]
models = ["gpt-4o"]
""",
    ("provider", "mock"): """[[provider]]
id = "mock"
kind = "mock"
models = ["mock-small", "mock-large"]
""",
    ("model", "gpt-4o"): """[model."gpt-4o"]
targets = [{ provider = "openai", model = "gpt-4o" }, { provider = "azure", model = "gpt-4o" }]
""",
    ("model", "smart"): """[model.smart]
targets = [{ provider = "openai", model = "gpt-4o" }]
""",
    ("model", "claude-long"): """[model.claude-long]
targets = [{ provider = "anthropic", model = "claude-haiku-4-5" }]
""",
    ("group", "pro"): "[group.pro]\n",
    ("group", "free"): "[group.free]\n",
    **{
        ("price", model): f'[price."{model}"]\ninput = 1.0\noutput = 2.0\n'
        for model in ("gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4.1-mini", "claude-haiku-4-5", "mock-small", "mock-large")
    },
}

# A context alias that targets a provider the block redefines is dropped with it.
NEEDS: dict[tuple[str, str], set[tuple[str, str]]] = {
    ("model", "gpt-4o"): {("provider", "openai"), ("provider", "azure")},
    ("model", "smart"): {("provider", "openai")},
    ("model", "claude-long"): {("provider", "anthropic")},
}


def fenced(lang: tuple[str, ...]) -> list[tuple[str, str]]:
    """(where, text) of every fenced block in one of these languages."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) in lang:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


TOML_BLOCKS = fenced(("toml",))


def defined(doc: dict[str, object]) -> set[tuple[str, str]]:
    ids: set[tuple[str, str]] = set()
    for table in ("provider", "key", "admin_key", "rule"):
        for item in doc.get(table, []) or []:  # type: ignore[attr-defined]
            ids.add((table, str(item.get("id"))))
    for table in ("model", "group", "price"):
        for name in doc.get(table, {}) or {}:  # type: ignore[attr-defined]
            ids.add((table, str(name)))
    return ids


def bundle_for(block: str, tmp: Path) -> Path:
    body = block if re.match(r"(#[^\n]*\n|\s)*schema\s*=", block) else f"schema = 1\n\n{block}"
    secrets = tmp / "secrets"
    secrets.mkdir()
    for path in re.findall(r"\$\{file:([^}]+)\}", body):
        target = secrets / Path(path).name
        target.write_text("secret-from-a-file\n")
        body = body.replace(f"${{file:{path}}}", f"${{file:{target}}}")
    bundle = tmp / "bundle"
    bundle.mkdir()
    (bundle / "bundle.toml").write_text(body)
    own = defined(tomllib.loads(body))
    overridden = own | {ident for ident, needs in NEEDS.items() if needs & own}
    context = [text for ident, text in CONTEXT.items() if ident not in overridden]
    (bundle / "context.toml").write_text("schema = 1\n\n" + "\n".join(context))
    return bundle


@pytest.mark.parametrize(("where", "block"), TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_toml_block_passes_check(where: str, block: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = block.split("\n", 1)[0]
    if first.startswith("# fragment"):
        pytest.skip("a fragment")
    if "tollgate serve --config" in first:
        from gateway.settings import CONFIG_ENV, ServeSettings

        config = tmp_path / "tollgate.toml"
        config.write_text(block)
        for name in list(os.environ):
            if name.startswith("TOLLGATE_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv(CONFIG_ENV, str(config))
        ServeSettings()
        return
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block):
        monkeypatch.setenv(name, f"dummy-{name.lower()}")  # required variables
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-", block):
        monkeypatch.delenv(name, raising=False)  # their defaults apply
    bundle = bundle_for(block, tmp_path)
    try:
        load_snapshot(bundle)
    except BundleError as exc:
        pytest.fail(f"{where}: the block fails `tollgate check`:\n" + "\n".join(map(str, exc.problems)))


def command_lines(block: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def tollgate_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for where, block in fenced(("sh", "bash", "shell", "console")):
        for line in command_lines(block):
            for command in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                try:
                    words = shlex.split(command, comments=True)
                except ValueError:
                    continue
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                    words = words[1:]  # VAR=value prefixes
                if words and words[0].rsplit("/", 1)[-1] == "tollgate":
                    args = []
                    for word in words[1:]:
                        if re.match(r"\d*[<>]", word):
                            break  # a redirection ends the arguments
                        args.append(word)
                    found.append((where, args))
    return found


INVOCATIONS = tollgate_invocations()


def test_docs_show_tollgate_commands() -> None:
    assert len(INVOCATIONS) >= 10, INVOCATIONS


@pytest.mark.parametrize(("where", "argv"), INVOCATIONS, ids=[f"{w} {' '.join(a)}" for w, a in INVOCATIONS])
def test_tollgate_command_line_parses(where: str, argv: list[str]) -> None:
    parser = build_parser()
    parsers = [parser]
    while parsers:  # no abbreviations: a renamed flag must not still match its old prefix
        sub = parsers.pop()
        sub.allow_abbrev = False
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code != 0:  # --help exits 0
            pytest.fail(f"{where}: `tollgate {' '.join(argv)}` does not parse: exit {exc.code}")
    except argparse.ArgumentError as exc:
        pytest.fail(f"{where}: `tollgate {' '.join(argv)}` does not parse: {exc}")
