"""Bundle problems: one message each, with the file, line and field path it concerns."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

Segment = str | int
Path = tuple[Segment, ...]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: Path) -> str:
    """`("key", 3, "group")` -> `key[3].group`; odd keys are quoted like TOML does."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            text = seg if _BARE.match(seg) else msgspec.json.encode(seg).decode()
            out += f".{text}" if out else text
    return out


class Problem(msgspec.Struct, frozen=True):
    file: str
    line: int | None
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class BundleError(Exception):
    """A bundle that must not take effect; carries every problem found."""

    def __init__(self, problems: Sequence[Problem], sources: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        self.sources = tuple(sources)  # files outside the bundle it read (see Snapshot.sources)
        super().__init__("\n".join(str(p) for p in self.problems))
