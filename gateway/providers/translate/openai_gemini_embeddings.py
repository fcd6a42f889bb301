"""OpenAI `/v1/embeddings` client -> Gemini upstream: one `:batchEmbedContents` call (a request
per input, `dimensions` as `outputDimensionality`), the vectors back in OpenAI's list shape,
as floats or, for `encoding_format=base64`, little-endian float32 in base64 as OpenAI sends them.

Gemini's embedding API reports no token usage (unless a `usageMetadata` comes back): the
prompt tokens are estimated at ceil(chars / 4) and the usage row says `estimated`.
"""

from __future__ import annotations

from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import embeddings as ew
from ..wire import gemini as gw
from .codec import Outgoing, StreamTap

VERB = "batchEmbedContents"


def input_texts(value: object) -> list[str]:
    """The texts of OpenAI's `input`: a string or a list of strings (token arrays are refused)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)  # type: ignore[arg-type]  # every item checked above
    if isinstance(value, list) and value and all(isinstance(v, int | list) for v in value):
        raise InvalidRequest("token arrays cannot be embedded by a Gemini provider; send the text as a "
                             "string or a list of strings", param="input")
    raise InvalidRequest("input: a non-empty string or list of strings is required", param="input")


def to_batch(req: ew.EmbeddingsRequest, served: str) -> ew.BatchEmbedRequest:
    if req.dimensions is not None and req.dimensions <= 0:
        raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
    model = "models/" + served.removeprefix("models/")
    return ew.BatchEmbedRequest(requests=[
        ew.EmbedRequest(model=model, content=gw.Content(parts=[gw.Part(text=text)]),
                        outputDimensionality=req.dimensions)
        for text in input_texts(req.input)])


def usage_of(resp: ew.EmbedResponse, texts: list[str]) -> TokenUsage:
    meta = resp.usageMetadata
    if meta is not None and meta.promptTokenCount is not None:
        return TokenUsage(prompt_tokens=meta.promptTokenCount)
    return ew.estimated_usage(texts)


def to_openai(resp: ew.EmbedResponse, req: ew.EmbeddingsRequest, texts: list[str]
              ) -> tuple[ew.EmbeddingsResponse, TokenUsage]:
    vectors = resp.embeddings if resp.embeddings is not None else [resp.embedding] if resp.embedding else []
    if len(vectors) != len(texts):
        raise UpstreamError(f"the Gemini upstream sent {len(vectors)} embeddings for {len(texts)} inputs")
    as_base64 = req.encoding_format == "base64"
    data = [ew.OpenAIEmbedding(index=i, embedding=ew.base64_floats(v.values) if as_base64 else v.values)
            for i, v in enumerate(vectors)]
    usage = usage_of(resp, texts)
    tokens = ew.EmbeddingsUsage(prompt_tokens=usage.prompt_tokens, total_tokens=usage.prompt_tokens)
    return ew.EmbeddingsResponse(data=data, model=req.model or "", usage=tokens), usage


class OpenAIEmbeddingsToGemini:
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        req = ew.decode_client(ew.embeddings_request_decoder, out.body)
        return VERB, ew.encoder.encode(to_batch(req, out.upstream_model))

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        req = ew.decode_client(ew.embeddings_request_decoder, out.body)
        resp = ew.decode_upstream(ew.embed_response_decoder, body, "Gemini")
        doc, usage = to_openai(resp, req, input_texts(req.input))
        return ew.encoder.encode(doc), usage

    def stream(self, out: Outgoing) -> StreamTap:
        raise InvalidRequest("embeddings cannot be streamed", param="stream")
