"""Map field paths to line numbers in a TOML source (tomllib keeps no positions).

A light line scanner: it follows table headers (`[a.b]`, `[[a]]` with per-array counters) and
`key = value` lines, and records the line where each path starts. Paths inside inline tables or
arrays resolve to the line of their nearest recorded ancestor.
"""

from __future__ import annotations

import re
import tomllib

from .problems import Path

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(#.*)?$")
_ASSIGN = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*="""
)
_DOTTED = re.compile(r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'""")


def split_key(dotted: str) -> list[str]:
    parts = []
    for raw in _DOTTED.findall(dotted):
        if raw.startswith('"'):
            parts.append(_basic_string(raw))
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return parts


def _basic_string(raw: str) -> str:
    """A quoted key's text with TOML's escapes (`\\uXXXX`, `\\"`, ...) resolved; non-ASCII
    characters stay as they are."""
    try:
        value = tomllib.loads(f"k = {raw}")["k"]
    except tomllib.TOMLDecodeError:
        return raw[1:-1]
    return value if isinstance(value, str) else raw[1:-1]


def _open_string(line: str, open_at_start: str | None) -> str | None:
    """The multi-line string delimiter (`\"\"\"` or `'''`) still open at the end of `line`, given
    the one open at its start. Single-line strings and comments are skipped, so a delimiter
    inside them does not count."""
    if open_at_start is None:
        if '"""' not in line and "'''" not in line:
            return None
    elif open_at_start not in line:
        return open_at_start
    state, i, n = open_at_start, 0, len(line)
    while i < n:
        if state is not None:
            if state == '"""' and line[i] == "\\":
                i += 2
            elif line.startswith(state, i):
                i += 3
                extra = 0  # up to two quotes may end the content right before the delimiter
                while i < n and extra < 2 and line[i] == state[0]:
                    i, extra = i + 1, extra + 1
                state = None
            else:
                i += 1
            continue
        if line[i] == "#":
            break
        if line.startswith(('"""', "'''"), i):
            state, i = line[i : i + 3], i + 3
        elif line[i] == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        elif line[i] == "'":
            end = line.find("'", i + 1)
            i = n if end < 0 else end + 1
        else:
            i += 1
    return state


class LineIndex:
    def __init__(self, source: str) -> None:
        self._lines: dict[Path, int] = {}
        self._build(source)

    def _build(self, source: str) -> None:
        counters: dict[tuple[str, ...], int] = {}
        table: Path = ()
        in_multiline: str | None = None
        # Lines end at line feeds only, as tomllib counts them: str.splitlines also splits at
        # U+2028, U+0085 and the like, which TOML allows in strings and comments.
        for lineno, line in enumerate(source.split("\n"), start=1):
            if in_multiline:
                in_multiline = _open_string(line, in_multiline)
                continue
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                names = split_key(header.group(2))
                is_array = header.group(1) == "[["
                table = self._table_path(names, is_array, counters)
                if is_array:  # the array itself starts at its first element: `[[keys]]` -> keys
                    self._lines.setdefault(table[:-1], lineno)
                self._lines.setdefault(table, lineno)
                continue
            assign = _ASSIGN.match(line)
            if assign:
                names = split_key(assign.group(1))
                for end in range(1, len(names) + 1):  # `a.b = 1` also defines `a` here
                    self._lines.setdefault(table + tuple(names[:end]), lineno)
            # A multi-line string may start on any line, in a multi-line array too.
            in_multiline = _open_string(line, None)

    def _table_path(self, names: list[str], is_array: bool, counters: dict[tuple[str, ...], int]) -> Path:
        # Arrays of tables nest: `[[a]]` then `[a.b]` means a[last].b.
        path: list[str | int] = []
        for i, name in enumerate(names):
            path.append(name)
            plain = tuple(str(s) for s in path if isinstance(s, str))
            if is_array and i == len(names) - 1:
                counters[plain] = counters.get(plain, -1) + 1
                path.append(counters[plain])
            elif plain in counters:
                path.append(counters[plain])
        return tuple(path)

    def line_of(self, path: Path) -> int | None:
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None
