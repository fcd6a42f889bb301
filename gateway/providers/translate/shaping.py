"""The last step of building an upstream body, after the codec translated it: an alias's
default reasoning effort (reasoning.py), the `set_body` of the rules that matched, then the
provider's own `body` table (last, so what a provider refuses stays removed). Nothing
configured: the codec's bytes go out as they are, with no decode or encode.

When something is configured, the body is decoded one level deep (`dict[str, Raw]`): only the
top-level fields an override touches are decoded and re-encoded, the rest (the messages, most
of the bytes) is copied as it came."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import msgspec

from ...core.body_override import BodyPatch
from ...errors import InvalidRequest
from .reasoning import apply_default

_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_MISSING = object()


class LazyBody(MutableMapping[str, Any]):
    """A JSON object whose top-level values are decoded when first read (and then re-encoded)."""

    __slots__ = ("_raw", "_values")

    def __init__(self, body: bytes) -> None:
        try:
            self._raw: dict[str, Any] = _top.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidRequest("body overrides apply to JSON object bodies only") from None
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        value = self._values.get(name, _MISSING)
        if value is _MISSING:
            value = self._values[name] = msgspec.json.decode(self._raw[name])
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self._raw[name] = None  # keeps the field's place
        self._values[name] = value

    def __delitem__(self, name: str) -> None:
        del self._raw[name]
        self._values.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def encode(self) -> bytes:
        doc = {name: self._values.get(name, raw) for name, raw in self._raw.items()}
        return msgspec.json.encode(doc)


def shape(body: bytes, family: str, endpoint: str, *, reasoning: str | None = None,
          rules: Sequence[BodyPatch] = (), provider: BodyPatch | None = None) -> bytes:
    """The upstream body with the configured overrides applied."""
    if reasoning is None and not rules and provider is None:
        return body
    doc = LazyBody(body)
    if reasoning is not None:
        apply_default(doc, family, endpoint, reasoning)
    for patch in rules:
        patch.apply(doc)
    if provider is not None:
        provider.apply(doc)
    return doc.encode()
