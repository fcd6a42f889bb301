"""Read a bundle directory: decode each `*.toml` file strictly and merge them into a `RawBundle`.

Each item keeps where it came from (file and path inside that file) so that later checks can
report `policies/keys.toml:14: key[3].group: ...`.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Generic, TypeVar

import msgspec

from .locate import LineIndex
from .problems import Path, Problem, format_path
from .types import AdminKey, Alias, BundleFile, Group, Key, Price, Provider, Rule, Settings

T = TypeVar("T")

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\[([^\]]+)\]")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class Loc:
    file: str
    path: Path


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


def _decode_file(name: str, data: bytes, raw: RawBundle) -> tuple[BundleFile | None, Problem | None]:
    text, problem = _decode_utf8(name, data)
    if text is None:
        return None, problem
    raw.texts[name] = text
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pos = _TOML_POS.search(str(exc))
        message = _TOML_POS.sub("", str(exc)).strip()
        line = int(pos.group(1)) if pos else None
        column = f" (column {pos.group(2)})" if pos else ""
        return None, Problem(name, line, "", f"TOML syntax error: {message}{column}")
    if "schema" not in document:
        return None, Problem(name, 1, "schema", "missing `schema = 1` at the top of the file")
    try:
        return msgspec.convert(document, type=BundleFile, strict=True), None
    except msgspec.ValidationError as exc:
        return None, _validation_problem(name, str(exc), raw, document)


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
    match = _MSGSPEC_PATH.match(text)
    message, path_text = (match.group("msg"), match.group("path") or "") if match else (text, "")
    path = _resolve_elided(document, _parse_msgspec_path(path_text), text)
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    missing = re.match(r"Object missing required field `(.+)`", message)
    if unknown:
        hint = _field_hint(document, path, unknown.group(1))
        path, message = (*path, unknown.group(1)), f"unknown field{hint}"
    elif message.startswith("Expected `str` matching regex") and path and path[-1] == "id":
        value = _value_at(document, path)
        message = f"{_quote(value)} is not a valid id ({_ID_RULE})"
    elif missing:
        path, message = (*path, missing.group(1)), "missing required field"
    elif path and path[-1] == "kind" and message.startswith("Invalid value"):
        kinds = "openai, openai-compatible, azure, anthropic, gemini, midjourney, mock"
        message = f"{message.removeprefix('Invalid value ')} is not a provider kind ({kinds})"
    elif path == ("schema",):
        message = "unsupported schema version (this gateway reads schema = 1)"
    elif message.startswith("Invalid enum value"):
        info = _type_at(document, path)
        if isinstance(info, msgspec.inspect.LiteralType):
            message += f" (one of: {', '.join(str(v) for v in info.values)})"
    return raw.problem(Loc(name, path), message)


_ID_RULE = "letters, digits and . _ : / -, starting with a letter or digit"
_ELIDED = "..."  # msgspec prints every dict key in an error path as `[...]`
_MISSING = object()


def _quote(value: Any) -> str:
    return msgspec.json.encode(value).decode() if isinstance(value, str) else repr(value)


def _value_at(document: Any, path: Path) -> Any:
    node = document
    for seg in path:
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def _with_value(node: Any, path: Path, value: Any) -> Any:
    """A copy of `node` where the value at `path` is replaced; untouched branches are shared."""
    if not path:
        return value
    copy: Any = list(node) if isinstance(node, list) else dict(node)
    copy[path[0]] = _with_value(node[path[0]], path[1:], value)
    return copy


def _resolve_elided(document: dict[str, Any], path: Path, error: str) -> Path:
    """Replace each elided dict key by the real one. msgspec stops at the first error and reads
    a table in order, so a table cut down to its first n entries reproduces the very same error
    exactly when n reaches the culprit: a binary search finds it in log(n) conversions."""
    resolved: list[str | int] = []
    for i, seg in enumerate(path):
        if seg != _ELIDED:
            resolved.append(seg)
            continue
        table = _value_at(document, tuple(resolved))
        if not isinstance(table, dict) or not table:
            return (*resolved, *path[i:])
        items = list(table.items())

        def reproduces(n: int, at: Path = tuple(resolved), items: list[Any] = items) -> bool:
            try:
                msgspec.convert(_with_value(document, at, dict(items[:n])), type=BundleFile, strict=True)
            except msgspec.ValidationError as exc:
                return str(exc) == error
            return False

        lo, hi = 1, len(items)
        while lo < hi:
            mid = (lo + hi) // 2
            if reproduces(mid):
                hi = mid
            else:
                lo = mid + 1
        if not reproduces(lo):
            return (*resolved, *path[i:])
        resolved.append(items[lo - 1][0])
    return tuple(resolved)


def _field_hint(document: dict[str, Any], path: Path, name: str) -> str:
    """` (did you mean "key"?)`, else the fields the table accepts. An unknown sub-table of a
    named entry is most likely a bare key split at a dot: `[price.gemini-2.5-pro]` is TOML for
    price -> "gemini-2" -> "5-pro"."""
    if path and isinstance(path[-1], str) and isinstance(_value_at(document, (*path, name)), dict):
        parent = _type_at(document, path[:-1])
        if isinstance(parent, msgspec.inspect.DictType):
            quoted = f'{format_path(path[:-1])}."{path[-1]}.{name}"'
            return f" (a dot splits a bare key: did you mean [{quoted}]?)"
    info = _type_at(document, path)
    if not isinstance(info, msgspec.inspect.StructType):
        return ""
    fields = [f.encode_name for f in info.fields]
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (known: {', '.join(sorted(fields))})"


def _type_at(document: dict[str, Any], path: Path) -> Any:
    """The schema type of the value at `path` (msgspec.inspect), following the document to
    pick tagged-union members; None when the path leaves the schema."""
    info: Any = msgspec.inspect.type_info(BundleFile)
    node: Any = document
    for seg in path:
        info = _narrow(info, node)
        if isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == seg), None)
        elif isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return None
        node = _value_at(node, (seg,))
    return _narrow(info, node)


def _narrow(info: Any, node: Any) -> Any:
    """Pick the union member the value is decoded as: the struct whose tag matches, else the
    only non-None member."""
    if not isinstance(info, msgspec.inspect.UnionType):
        return info
    structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
    if isinstance(node, dict):
        for t in structs:
            if t.tag_field is not None and node.get(t.tag_field) == t.tag:
                return t
    others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
    return others[0] if len(others) == 1 else None


def _parse_msgspec_path(text: str) -> Path:
    segments: list[str | int] = []
    for dotted, index, quoted, other in _PATH_SEGMENT.findall(text):
        if dotted:
            segments.append(dotted)
        elif index:
            segments.append(int(index))
        elif quoted:
            segments.append(quoted)
        elif other:
            segments.append(other.strip("'\""))
    return tuple(segments)


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
