"""cel-python's parser, built with Lark's analysis cache.

celpy builds one LALR parser per process (`CELParser.CEL_PARSER`), and the grammar analysis
takes ~0.1 s: paid by `tollgate serve` (which checks the bundle) and again by every worker it
starts. Lark can keep that analysis in a file keyed by the grammar, the options and Lark's
version; loaded from there it takes ~0.01 s (benchmarks/README.md, start-up). The parser built
here is the one celpy would build (same grammar and options), only cached.

The cache lives in the user's cache directory (`$XDG_CACHE_HOME/tollgate`, else
`~/.cache/tollgate`, created 0700): Lark reads it with pickle, so it must not sit where another
user could write (Lark's own default is the shared temporary directory). Where that directory
cannot be made (a read-only home), the parser is built as celpy would, uncached."""

from __future__ import annotations

import os
import re
from pathlib import Path

import lark
from celpy import celparser
from celpy.celparser import CELParser


def cache_file() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = Path(base) / "tollgate"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    return directory / "cel-parser.lark-cache"


def install() -> None:
    """Give celpy its parser before it makes its own (a no-op once one exists)."""
    if CELParser.CEL_PARSER is not None:
        return
    cache = cache_file()
    grammar = (Path(celparser.__file__).parent / "cel.lark").read_text()
    CELParser.CEL_PARSER = lark.Lark(
        grammar,
        parser="lalr",
        start="expr",
        debug=True,
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": CELParser.ambiguous_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
        tree_class=lark.Tree,
        cache=str(cache) if cache is not None else False,
    )
