"""`${VAR}` / `${VAR:-default}` interpolation for provider secrets and URLs."""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnv(Exception):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"environment variable {name} is not set")


class BadReference(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(
            f'cannot interpolate "{text}": write ${{VAR}} or ${{VAR:-default}} (defaults do not nest)'
        )


def interpolate(text: str, env: Mapping[str, str], *, allow_missing: bool = False) -> str:
    # `${A:-${B}}` would otherwise give the literal `${B}`, and `${A` itself: both are mistakes.
    if "${" in _VAR.sub("", text) or any("${" in (m.group(2) or "") for m in _VAR.finditer(text)):
        raise BadReference(text)

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if allow_missing:
            return f"<{name}>"
        raise MissingEnv(name)

    return _VAR.sub(replace, text)


def has_missing(text: str, env: Mapping[str, str]) -> bool:
    """Whether `text` refers to a variable that is unset or empty and has no default (under
    `allow_missing` its value is a `<NAME>` placeholder, not what the gateway would use)."""
    return any(not env.get(m.group(1)) and m.group(2) is None for m in _VAR.finditer(text))


def referenced_values(text: str, env: Mapping[str, str]) -> list[str]:
    """The environment values `text` refers to: secrets, whatever field they end up in."""
    return [value for m in _VAR.finditer(text) if (value := env.get(m.group(1)))]
