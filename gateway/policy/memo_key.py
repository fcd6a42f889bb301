"""Memo keys for CEL values: rules memoize their results on the values they read (rules.py,
cel.py). Its own module so that it is compiled with the request path (gateway/compiled.py):
cel.py imports cel-python and lark, which are not."""

from __future__ import annotations

from typing import Any


def hashable(value: Any) -> Any:
    """A memo key for a value. Keys must be as distinct as CEL sees the values: in Python
    `1 == 1.0 == True` and a map could pass for a list of pairs, so booleans, floats and maps
    carry their type (which no JSON value can forge)."""
    if isinstance(value, str):  # the common case first: most values a rule reads are strings
        return value
    if isinstance(value, dict):
        return (dict, tuple(sorted([(k, hashable(v)) for k, v in value.items()])))
    if isinstance(value, list | tuple):
        return tuple([hashable(v) for v in value])
    if isinstance(value, bool | float):
        return (type(value), value)
    return value
