"""How a request in one client format reaches an upstream of one API family, and back: the
`Codec` protocol every module of this folder implements, and what it is given (`Outgoing`).

A codec rewrites the request body for the upstream, and turns the upstream's answer (whole
or streamed) into the client's format while extracting usage. Same family in and out is a
pass-through apart from the model name (openai_openai.py, native_passthrough.py); other pairs
translate (`<client>_<upstream>.py`). Which codec serves which pair is the table in
../codecs.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ...core.usage import TokenUsage

if TYPE_CHECKING:
    from ...config.snapshot import ProviderRuntime


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

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, endpoint: str, body: bytes, model: str, upstream_model: str, stream: bool,
                 client_wants_usage: bool, multipart: bool = False,
                 provider: ProviderRuntime | None = None) -> None:
        self.endpoint = endpoint
        self.body = body
        self.model = model
        self.upstream_model = upstream_model
        self.stream = stream
        self.client_wants_usage = client_wants_usage
        self.multipart = multipart
        self.provider = provider


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
