"""Read a bundle directory: decode each `*.toml` file strictly and merge them into a `RawBundle`.

Each item keeps where it came from (file and path inside that file) so that later checks can
report `policies/keys.toml:14: key[3].group: ...`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import rtoml

from .locate import LineIndex
from .problems import Path, Problem, format_path
from .types import AdminKey, Alert, Alias, BundleFile, Group, Key, Price, Provider, Rule, Settings
from .validation_messages import validation_message

T = TypeVar("T")

_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOML_EOF = "(at end of document)"  # tomllib's place for an error at the end, instead of _TOML_POS


@dataclass(frozen=True)
class Loc:
    file: str
    path: Path


class ReportError(Protocol):
    """Records an error at `loc`, or at the field path `sub` under it (the compiler's `error`)."""

    def __call__(self, loc: Loc, message: str, *sub: str | int) -> None: ...


@dataclass(frozen=True)
class Located(Generic[T]):
    item: T
    loc: Loc
    name: str = ""  # the table name for `[model.NAME]`-style entries


@dataclass
class RawBundle:
    directory: FsPath
    files: dict[str, bytes] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, LineIndex] = field(default_factory=dict)  # built on first use, see index()
    settings: Located[Settings] | None = None
    providers: list[Located[Provider]] = field(default_factory=list)
    aliases: list[Located[Alias]] = field(default_factory=list)
    prices: list[Located[Price]] = field(default_factory=list)
    groups: list[Located[Group]] = field(default_factory=list)
    keys: list[Located[Key]] = field(default_factory=list)
    admin_keys: list[Located[AdminKey]] = field(default_factory=list)
    rules: list[Located[Rule]] = field(default_factory=list)
    alerts: list[Located[Alert]] = field(default_factory=list)

    def index(self, file: str) -> LineIndex | None:
        """The file's line index, built only when a problem needs a line number: scanning a
        10,000-key bundle costs a third of its load time, and a valid bundle never needs it."""
        found = self.indexes.get(file)
        if found is None and file in self.texts:
            found = self.indexes[file] = LineIndex(self.texts[file])
        return found

    def problem(self, loc: Loc, message: str, *sub: str | int, severity: str = "error") -> Problem:
        path = loc.path + sub
        index = self.index(loc.file)
        line = index.line_of(path) if index else None
        return Problem(loc.file, line, format_path(path), message, severity)


def bundle_files(directory: FsPath) -> list[FsPath]:
    """Every `*.toml` under the directory, sorted; hidden files and folders are skipped."""
    found = []
    for path in sorted(directory.rglob("*.toml")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        found.append(path)
    return found


def display_name(directory: FsPath, path: FsPath) -> str:
    return str(directory / path.relative_to(directory))


def read_bundle(directory: FsPath) -> tuple[RawBundle, list[Problem]]:
    raw = RawBundle(directory=directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        return raw, [Problem(str(directory), None, "", "bundle directory does not exist")]
    paths = bundle_files(directory)
    if not paths:
        return raw, [Problem(str(directory), None, "", "bundle has no *.toml files")]
    for path in paths:
        name = display_name(directory, path)
        try:
            data = path.read_bytes()
        except OSError as exc:  # a dangling link, no permission, deleted mid-checkout...
            problems.append(Problem(name, None, "", f"cannot read file: {exc.strerror or exc}"))
            continue
        raw.files[name] = data
        decoded, problem = _decode_file(name, data, raw)
        if problem is not None:
            problems.append(problem)
        elif decoded is not None:
            problems.extend(_merge(raw, name, decoded))
    return raw, problems


_RTOML_FROM = 32 << 10  # characters: smaller files parse in a few ms either way


def _parse_toml(text: str) -> dict[str, Any]:
    """tomllib is the reference parser (its errors, with line and column, are the ones reported).
    A large file (thousands of keys) goes through rtoml first, ~3.5x faster; a file rtoml refuses,
    or one with a stray byte order mark (which rtoml skips), goes through tomllib."""
    if len(text) < _RTOML_FROM or "\ufeff" in text:
        return tomllib.loads(text)
    try:
        document: dict[str, Any] = rtoml.loads(text)
    except (rtoml.TomlParsingError, ValueError):
        return tomllib.loads(text)  # raises the error we report (or parses what rtoml would not)
    return document


def _decode_file(name: str, data: bytes, raw: RawBundle) -> tuple[BundleFile | None, Problem | None]:
    text, problem = _decode_utf8(name, data)
    if text is None:
        return None, problem
    raw.texts[name] = text
    try:
        document = _parse_toml(text)
    except tomllib.TOMLDecodeError as exc:
        return None, _syntax_problem(name, text, str(exc))
    if "schema" not in document:
        return None, Problem(name, 1, "schema", "missing `schema = 1` at the top of the file")
    try:
        return msgspec.convert(document, type=BundleFile, strict=True), None
    except msgspec.ValidationError as exc:
        return None, _validation_problem(name, str(exc), raw, document)


def _syntax_problem(name: str, text: str, detail: str) -> Problem:
    """tomllib's error with its line and column. An error at the very end (an unclosed array,
    table header, inline table or string on the last line, a key with no value) comes without
    them, so it is placed after the last non-blank line: that is where the missing part goes."""
    pos = _TOML_POS.search(detail)
    if pos:
        line, column = int(pos.group(1)), int(pos.group(2))
        message = _TOML_POS.sub("", detail).strip()
    elif detail.endswith(_TOML_EOF):
        line, column = _end_of_content(text)
        message = detail.removesuffix(_TOML_EOF).strip() + " at the end of the file"
    else:  # not a form tomllib uses today: report it whole rather than lose it
        return Problem(name, None, "", f"TOML syntax error: {detail}")
    return Problem(name, line, "", f"TOML syntax error: {message} (column {column})")


def _end_of_content(text: str) -> tuple[int, int]:
    """Line and column just past the last non-blank character. Lines are counted on line feeds
    only, as tomllib counts them (str.splitlines also splits on form feeds and the like)."""
    lines = text.split("\n")
    for number in range(len(lines), 0, -1):
        content = lines[number - 1].rstrip()
        if content:
            return number, len(content) + 1
    return 1, 1  # a blank document parses: tomllib has no end-of-document error for one


_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (  # longest first: UTF-32-LE's mark starts with UTF-16-LE's
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _decode_utf8(name: str, data: bytes) -> tuple[str | None, Problem | None]:
    """The file's text. A leading UTF-8 byte order mark (some Windows editors write one) is
    skipped; TOML requires UTF-8, so anything else that does not decode is a problem naming the
    first bad byte by offset, line and column."""
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    for bom, encoding in _OTHER_BOMS:
        if data.startswith(bom):
            message = f"file is {encoding} (it starts with a {encoding} byte order mark); save it as UTF-8"
            return None, Problem(name, 1, "", message)
    try:
        return data[start:].decode("utf-8"), None
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line_start = data.rfind(b"\n", 0, offset) + 1
        line = data.count(b"\n", 0, line_start) + 1
        column = len(data[max(line_start, start) : offset].decode("utf-8")) + 1  # valid up to here
        message = (
            f"file is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (column {column}) cannot "
            f"be decoded ({exc.reason}); save it as UTF-8"
        )
        return None, Problem(name, line, "", message)


def _validation_problem(name: str, text: str, raw: RawBundle, document: dict[str, Any]) -> Problem:
    path, message = validation_message(text, document)
    return raw.problem(Loc(name, path), message)


def _merge(raw: RawBundle, name: str, doc: BundleFile) -> Iterator[Problem]:
    if doc.settings is not None:
        if raw.settings is not None:
            yield raw.problem(
                Loc(name, ("settings",)),
                f"[settings] may appear once per bundle (first defined at {_where(raw, raw.settings.loc)})",
            )
        else:
            raw.settings = Located(doc.settings, Loc(name, ("settings",)))
    yield from _merge_list(raw, raw.providers, doc.provider, name, "provider")
    yield from _merge_list(raw, raw.keys, doc.key, name, "key")
    yield from _merge_list(raw, raw.admin_keys, doc.admin_key, name, "admin_key")
    yield from _merge_list(raw, raw.rules, doc.rule, name, "rule")
    yield from _merge_list(raw, raw.alerts, doc.alert, name, "alert")
    yield from _merge_table(raw, raw.aliases, doc.model, name, "model")
    yield from _merge_table(raw, raw.prices, doc.price, name, "price")
    yield from _merge_table(raw, raw.groups, doc.group, name, "group")


def _merge_list(
    raw: RawBundle, into: list[Located[Any]], items: list[Any], name: str, section: str
) -> Iterator[Problem]:
    seen = {located.item.id: located.loc for located in into}
    for i, item in enumerate(items):
        loc = Loc(name, (section, i))
        if item.id in seen:
            first = seen[item.id]
            where = _where(raw, first)
            yield raw.problem(loc, f'duplicate {section} id "{item.id}" (first defined at {where})', "id")
            continue
        seen[item.id] = loc
        into.append(Located(item, loc, item.id))


def _merge_table(
    raw: RawBundle, into: list[Located[Any]], table: dict[str, Any], name: str, section: str
) -> Iterator[Problem]:
    seen = {located.name: located.loc for located in into}
    for key, item in table.items():
        loc = Loc(name, (section, key))
        if key in seen:
            where = _where(raw, seen[key])
            yield raw.problem(loc, f'duplicate {section} "{key}" (first defined at {where})')
            continue
        seen[key] = loc
        into.append(Located(item, loc, key))


def _where(raw: RawBundle, loc: Loc) -> str:
    index = raw.index(loc.file)
    line = index.line_of(loc.path) if index else None
    return loc.file if line is None else f"{loc.file}:{line}"
