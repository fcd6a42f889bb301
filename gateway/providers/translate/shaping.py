"""The last step of building an upstream body, after the codec translated it: an alias's
default reasoning effort (reasoning.py), the `set_body` of the rules that matched, then the
provider's own `body` table (last, so what a provider refuses stays removed). Nothing
configured: the codec's bytes go out as they are, with no decode or encode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ...core.body_override import BodyPatch
from ...errors import InvalidRequest
from .reasoning import apply_default

_decoder = msgspec.json.Decoder(dict[str, Any])


def shape(body: bytes, family: str, endpoint: str, *, reasoning: str | None = None,
          rules: Sequence[BodyPatch] = (), provider: BodyPatch | None = None) -> bytes:
    """The upstream body with the configured overrides applied (one decode and one encode)."""
    if reasoning is None and not rules and provider is None:
        return body
    try:
        doc = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest("body overrides apply to JSON object bodies only") from None
    if reasoning is not None:
        apply_default(doc, family, endpoint, reasoning)
    for patch in rules:
        patch.apply(doc)
    if provider is not None:
        provider.apply(doc)
    return msgspec.json.encode(doc)
