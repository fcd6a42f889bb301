"""msgspec's validation errors on a bundle file, rewritten for the person who wrote it: the
field path resolved (msgspec elides dict keys), unknown fields with a "did you mean", ids,
provider kinds and enum values explained."""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec

from .problems import Path, format_path
from .types import BundleFile

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\[([^\]]+)\]")


def validation_message(text: str, document: dict[str, Any]) -> tuple[Path, str]:
    """msgspec's error text for `document` as (path inside the file, message for a person)."""
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
        kinds = "openai, openai-compatible, azure, anthropic, gemini, midjourney, suno, mock"
        message = f"{message.removeprefix('Invalid value ')} is not a provider kind ({kinds})"
    elif path == ("schema",):
        message = "unsupported schema version (this gateway reads schema = 1)"
    elif message.startswith("Invalid enum value"):
        info = _type_at(document, path)
        if isinstance(info, msgspec.inspect.LiteralType):
            message += f" (one of: {', '.join(str(v) for v in info.values)})"
    return path, message


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


