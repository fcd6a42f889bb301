"""How a request in one client format reaches an upstream of one API family, and back.

A codec rewrites the request body for the upstream, and turns the upstream's answer (whole
or streamed) into the client's format while extracting usage. Same family in and out is a
pass-through apart from the model name; other pairs translate (see the translate modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..core.usage import TokenUsage

if TYPE_CHECKING:
    from ..config.snapshot import ProviderRuntime

# provider kind -> the API family it speaks
FAMILY_OF_KIND = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure": "openai",
    "mock": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "midjourney": "midjourney",
}


@dataclass(slots=True)
class Outgoing:
    """What the relay knows about the client's request when building an upstream call."""

    endpoint: str  # the client's endpoint, e.g. "chat/completions" or "messages"
    body: bytes
    model: str  # the model name the client sent
    upstream_model: str  # the model name to send upstream
    stream: bool
    client_wants_usage: bool
    multipart: bool = False
    provider: ProviderRuntime | None = None  # the upstream (e.g. Anthropic's default max_tokens)


class StreamTap(Protocol):
    """Turns upstream stream chunks into client stream bytes as they arrive."""

    usage: TokenUsage | None
    error: str | None  # set when the upstream reported an error inside the stream

    @property
    def chars(self) -> int:
        """Text characters relayed (for estimates when a stream is cut)."""
        ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Codec(Protocol):
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        """(upstream endpoint, upstream body)."""
        ...

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        """(client body, usage) for a whole (non-streamed) successful answer."""
        ...

    def stream(self, out: Outgoing) -> StreamTap: ...


class NoCodec(Exception):
    """This client format cannot reach this upstream family (yet)."""


_CODECS: dict[tuple[str, str], Codec] = {}
_ENDPOINT_CODECS: dict[tuple[str, str, str], Codec] = {}  # one client endpoint (e.g. embeddings)
_KIND_CODECS: dict[tuple[str, str, str], Codec] = {}  # one endpoint to one provider kind


def register(client_family: str, upstream_family: str, codec: Codec, endpoint: str | None = None) -> None:
    """The codec for a pair of families; with `endpoint`, only for that client endpoint (it wins
    over the pair's general codec, which is for generation)."""
    if endpoint is None:
        _CODECS[(client_family, upstream_family)] = codec
    else:
        _ENDPOINT_CODECS[(client_family, upstream_family, endpoint)] = codec


def register_kind(client_family: str, provider_kind: str, endpoint: str, codec: Codec) -> None:
    """The codec for one client endpoint to one provider kind, where kinds of a family differ in
    what they serve (e.g. the Responses API: `openai` has it, `openai-compatible` servers do not)."""
    _KIND_CODECS[(client_family, provider_kind, endpoint)] = codec


def codec_for(client_family: str, provider_kind: str, endpoint: str | None = None) -> Codec:
    upstream = FAMILY_OF_KIND.get(provider_kind, provider_kind)
    codec = _KIND_CODECS.get((client_family, provider_kind, endpoint or ""))
    codec = codec or _ENDPOINT_CODECS.get((client_family, upstream, endpoint or ""))
    codec = codec or _CODECS.get((client_family, upstream))
    if codec is None:
        raise NoCodec(f"{client_family} requests cannot be sent to a {provider_kind} provider")
    return codec
