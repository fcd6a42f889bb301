"""Embeddings on the wire, as typed Structs: OpenAI's `/v1/embeddings` and Gemini's
`:embedContent` / `:batchEmbedContents` (camelCase), plus what both directions share: the
token estimate (Gemini's embedding API reports no usage) and OpenAI's base64 vector format."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import msgspec

from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from .gemini import Content

CHARS_PER_TOKEN = 4  # the gateway's estimate everywhere (reservations, cut streams, countTokens)


class _S(msgspec.Struct, omit_defaults=True):
    pass


# -- OpenAI --------------------------------------------------------------------------------------


class EmbeddingsRequest(_S):
    """A client's body (decoded) and the body sent to an OpenAI-compatible upstream (encoded)."""

    model: str | None = None
    input: Any = None  # a string, a list of strings, or token arrays (list[int] / list[list[int]])
    dimensions: int | None = None
    encoding_format: str | None = None  # float (default) | base64


class OpenAIEmbedding(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0
    object: str = "embedding"


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingsResponse(msgspec.Struct):
    data: list[OpenAIEmbedding]
    model: str = ""
    object: str = "list"
    usage: EmbeddingsUsage | None = None


# -- Gemini --------------------------------------------------------------------------------------


class EmbedRequest(_S):
    """One `:embedContent` body, and one item of `:batchEmbedContents`' `requests`."""

    content: Content | None = None
    model: str | None = None
    taskType: str | None = None
    title: str | None = None
    outputDimensionality: int | None = None


class BatchEmbedRequest(_S):
    requests: list[EmbedRequest] | None = None  # required: absent is the client's 400, naming it


class ContentEmbedding(_S):
    values: list[float] = []


class EmbedUsage(_S):
    promptTokenCount: int | None = None
    totalTokenCount: int | None = None


class EmbedResponse(_S):
    """`:embedContent`'s answer (`embedding`) and `:batchEmbedContents`' (`embeddings`)."""

    embedding: ContentEmbedding | None = None
    embeddings: list[ContentEmbedding] | None = None
    usageMetadata: EmbedUsage | None = None


embeddings_request_decoder = msgspec.json.Decoder(EmbeddingsRequest)
embeddings_response_decoder = msgspec.json.Decoder(EmbeddingsResponse)
embed_request_decoder = msgspec.json.Decoder(EmbedRequest)
batch_request_decoder = msgspec.json.Decoder(BatchEmbedRequest)
embed_response_decoder = msgspec.json.Decoder(EmbedResponse)
encoder = msgspec.json.Encoder()


def decode_client(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """The client's body, or a 400 saying what is wrong with it."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None


def decode_upstream(decoder: msgspec.json.Decoder[Any], body: bytes, family: str) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamError(f"the {family} upstream sent an unreadable embeddings answer: {exc}") from None


def estimated_usage(texts: list[str]) -> TokenUsage:
    """ceil(chars / 4) over the texts embedded, marked as an estimate."""
    chars = sum(len(t) for t in texts)
    return TokenUsage(prompt_tokens=math.ceil(chars / CHARS_PER_TOKEN), source="estimated")


def base64_floats(values: list[float]) -> str:
    """OpenAI's `encoding_format=base64`: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def float_values(embedding: list[float] | str) -> list[float]:
    """The reverse of `base64_floats`, for an upstream that answered in base64 anyway."""
    if isinstance(embedding, list):
        return embedding
    raw = base64.b64decode(embedding)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
