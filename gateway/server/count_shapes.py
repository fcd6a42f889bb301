"""The shape a token-count body must have before the gateway counts it itself: the JSON types
of the messages (Anthropic) or contents (Gemini) and of their blocks or parts. The block and
part types are not checked (the upstream's count endpoint, or its generation, judges those)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest


def _objects(value: Any, where: str, *, text: bool = False) -> None:
    """`value` is a list of JSON objects (or, with `text`, a string or such a list)."""
    if text and isinstance(value, str):
        return
    if not isinstance(value, list):
        kind = "a string or a list of objects" if text else "a list of objects"
        raise InvalidRequest(f"{where}: expected {kind}, got {_name(value)}", param=where)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            at = f"{where}[{i}]"
            raise InvalidRequest(f"{at}: expected an object, got {_name(item)}", param=at)


def _name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def check_anthropic(doc: dict[str, Any]) -> None:
    messages = doc.get("messages")
    _objects(messages, "messages")
    for i, message in enumerate(messages or ()):
        _objects(message.get("content"), f"messages[{i}].content", text=True)
    if doc.get("system") is not None:
        _objects(doc["system"], "system", text=True)
    if doc.get("tools") is not None:
        _objects(doc["tools"], "tools")


def check_gemini(contents: list[Any], where: str) -> None:
    _objects(contents, where)
    for i, content in enumerate(contents):
        if "parts" in content:
            _objects(content["parts"], f"{where}[{i}].parts")
