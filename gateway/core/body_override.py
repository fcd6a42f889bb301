"""Body overrides: fields deep-merged into (`set`) or removed from (`remove`, dotted paths) the
upstream request body, after translation to the upstream's format. A provider's `body` table
and the `set_body` rule action compile to a `BodyPatch`; the relay applies the patches of a
request in one decode/encode, and only when there is one (otherwise the bytes pass untouched).

`problems` checks a patch at load time against what each API family needs, so an override
that can only produce an invalid body (setting `messages` to a string, removing `model`) is a
bundle error rather than an upstream 400 on every request. (docs/providers.md, "Body overrides")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

# Fields the gateway itself decides: the stream mode follows the client (the answer is read
# accordingly) and the model follows the route (`model_map` renames it, and the ledger says so).
_GATEWAY_OWNED = {"stream": "follows the client's request", "model": "follows the route (use model_map)"}

# Per upstream family: fields a request cannot do without, and the JSON types of known fields.
REQUIRED: Mapping[str, frozenset[str]] = {
    "openai": frozenset({"model", "messages"}),
    "anthropic": frozenset({"model", "messages", "max_tokens"}),
    "gemini": frozenset({"contents"}),
}
_OBJ, _LIST, _STR, _INT, _NUM, _BOOL = dict, list, str, int, (int, float), bool
TYPES: Mapping[str, Mapping[str, Any]] = {
    "openai": {"messages": _LIST, "max_tokens": _INT, "max_completion_tokens": _INT, "n": _INT,
               "temperature": _NUM, "top_p": _NUM, "tools": _LIST, "stream_options": _OBJ,
               "response_format": _OBJ, "reasoning_effort": _STR, "logprobs": _BOOL, "seed": _INT,
               "stop": (str, list), "metadata": _OBJ, "user": _STR},
    "anthropic": {"messages": _LIST, "max_tokens": _INT, "system": (str, list), "temperature": _NUM,
                  "top_p": _NUM, "top_k": _INT, "tools": _LIST, "thinking": _OBJ,
                  "stop_sequences": _LIST, "metadata": _OBJ, "tool_choice": _OBJ},
    "gemini": {"contents": _LIST, "generationConfig": _OBJ, "safetySettings": _LIST,
               "systemInstruction": _OBJ, "tools": _LIST, "toolConfig": _OBJ, "cachedContent": _STR},
}
_TYPE_NAMES = {dict: "a table", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean"}


@dataclass(frozen=True, slots=True)
class BodyPatch:
    set: Mapping[str, Any]
    remove: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def build(cls, set_fields: Mapping[str, Any], remove: Iterable[str] = ()) -> BodyPatch:
        return cls(set=_copy(dict(set_fields)), remove=tuple(tuple(p.split(".")) for p in remove))

    def apply(self, doc: MutableMapping[str, Any]) -> None:
        merge(doc, self.set)
        for path in self.remove:
            _remove(doc, path)


def merge(doc: MutableMapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Tables merge into tables, key by key; any other value replaces what was there."""
    for name, value in fields.items():
        old = doc.get(name) if isinstance(value, dict) else None
        if isinstance(old, dict):
            merge(old, value)
        else:
            doc[name] = _copy(value)


def _copy(value: Any) -> Any:  # a patch is shared by every request: never hand out its tables
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _remove(doc: MutableMapping[str, Any], path: tuple[str, ...]) -> None:
    node: Any = doc
    for name in path[:-1]:
        node = node.get(name) if isinstance(node, MutableMapping) else None
        if node is None:
            return
    if isinstance(node, MutableMapping) and path[-1] in node:
        del node[path[-1]]


def problems(patch: BodyPatch, families: Iterable[str]) -> list[str]:
    """Why `patch` can only produce an invalid body for an upstream of one of `families`."""
    found: list[str] = []
    for name, why in _GATEWAY_OWNED.items():
        if name in patch.set:
            found.append(f"`{name}` cannot be set: it {why}")
    for family in families:
        types = TYPES.get(family, {})
        for name, value in patch.set.items():
            expected = types.get(name)
            if name in _GATEWAY_OWNED or expected is None or _is(value, expected):
                continue
            found.append(f"`{name}` must be {_describe(expected)} for a {family} upstream, not "
                         f"{_describe(type(value))}")
        for path in patch.remove:
            if len(path) == 1 and path[0] in REQUIRED.get(family, ()):
                found.append(f"`{path[0]}` cannot be removed: a {family} request needs it")
    return list(dict.fromkeys(found))


def _is(value: Any, expected: Any) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # TOML true is not a number
    if isinstance(value, Mapping):
        return dict in kinds
    return isinstance(value, kinds)


def _describe(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
