"""Write docs/cli.md from the real argparse parser (`python scripts/gen_cli_doc.py`), so the
CLI reference cannot drift from the code; tests/test_docs_snippets.py checks it is current."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "cli.md"

HEADER = """# Command line reference

Generated from the parser by `scripts/gen_cli_doc.py`: do not edit by hand (the test suite
fails when this file and the parser differ). With the virtual environment active
(`. .venv/bin/activate`) the command is `tollgate`; otherwise `.venv/bin/tollgate`.
Every `tollgate serve` option can also be set as a `TOLLGATE_<NAME>` environment variable or a
key of the `--config` file: see [configuration](configuration.md).
"""


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    yield path, parser
    for name, child in _subcommands(parser):
        yield from _walk(child, [*path, name])


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width
    sys.path.insert(0, str(ROOT))
    from gateway.cli import build_parser

    parser = build_parser()
    parts = [HEADER]
    for path, sub in _walk(parser, ["tollgate"]):
        title = " ".join(path)
        sub.prog = title
        parts.append(f"\n## `{title}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
