"""The CEL parser built from Lark's cache parses exactly as celpy's own parser, and a cache
directory that cannot be written only costs the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPRESSIONS = [
    'key.id == "team-a" && request.model.startsWith("gpt-")',
    "true || false && !(request.max_tokens > 4096u)",
    'request.metadata["user"] in ["a", "b"] ? 1.5e3 : -2',
    "usage.budget_fraction >= 0.9 && now.getHours() < 8",
    'request.headers.exists(h, h.startsWith("x-")) && size(key.tags) == 0',
    "b'\\x00abc' == bytes('abc') || null == null",
]
PARSE = """
import json, sys
from celpy import celparser
if sys.argv[1] == "ours":
    from gateway.policy import cel_parser
    cel_parser.install()
from lark import Token, Tree

def plain(node):  # rule names are Tokens from celpy's parser, str from a cached one: same text
    if isinstance(node, Tree):
        return [str(node.data), node.meta.line, node.meta.column, [plain(c) for c in node.children]]
    return [node.type, str(node), node.line, node.column] if isinstance(node, Token) else repr(node)

parser = celparser.CELParser()
print(json.dumps([plain(parser.parse(e)) for e in json.loads(sys.argv[2])]))
"""


def parse(mode: str, cache_home: Path) -> list[object]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    out = subprocess.run([sys.executable, "-c", PARSE, mode, json.dumps(EXPRESSIONS)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    parsed: list[object] = json.loads(out.stdout)
    return parsed


def test_cached_parser_parses_like_celpy(tmp_path: Path) -> None:
    reference = parse("celpy", tmp_path)
    cold = parse("ours", tmp_path)  # builds and writes the cache
    cache = tmp_path / "tollgate" / "cel-parser.lark-cache"
    assert cache.is_file()
    assert (cache.parent.stat().st_mode & 0o777) == 0o700
    warm = parse("ours", tmp_path)  # loads it
    assert reference == cold == warm
    assert "BOOL_LIT" in json.dumps(reference)  # the lexer callback survives the cache


def test_unwritable_cache_directory_falls_back_to_building(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert parse("ours", blocker) == parse("celpy", tmp_path)
