"""A codec that refuses: an endpoint whose pair of families would otherwise reach an upstream
that cannot serve it (embeddings on Vertex AI and Bedrock providers), answered with a 400
`unsupported_endpoint` in the client's shape before anything is sent."""

from __future__ import annotations

from ...core.usage import TokenUsage
from ...errors import InvalidRequest
from .codec import Outgoing, StreamTap


class Unsupported:
    def __init__(self, what: str) -> None:
        self.what = what  # e.g. "a Vertex AI provider"

    def _refuse(self, out: Outgoing) -> InvalidRequest:
        return InvalidRequest(f"{out.endpoint} cannot be served by {self.what}", code="unsupported_endpoint")

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        raise self._refuse(out)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        raise self._refuse(out)

    def stream(self, out: Outgoing) -> StreamTap:
        raise self._refuse(out)
