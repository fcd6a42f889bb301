"""Gemini `:embedContent` / `:batchEmbedContents` clients (google-genai's `embed_content` calls the
latter) to each upstream family:

- a Gemini upstream: the body passes through with each `model` field set to the served model
  (the model in the URL is the adapter's); the embedding API reports no usage, so the prompt
  tokens are estimated at ceil(chars / 4) unless a `usageMetadata` comes back;
- an OpenAI-compatible upstream: one `/embeddings` call with every text as `input` (parts of one
  content joined by newlines, `outputDimensionality` as `dimensions`), the vectors back as
  `embedding.values` / `embeddings[].values`, billed with the upstream's `usage.prompt_tokens`;
  `taskType` and `title` have no OpenAI equivalent and are dropped (documented in README.md);
- an Anthropic upstream: refused with a 400 (Anthropic has no embeddings API).

A body without its field (`content` for `:embedContent`, `requests` for `:batchEmbedContents`),
or with one empty, is the client's 400 naming that field, before any upstream call.
"""

from __future__ import annotations

import msgspec

from ...core.family import Family, family_of, is_family
from ...core.usage import TokenUsage
from ...errors import InvalidRequest, UpstreamError
from ..wire import embeddings as ew
from .codec import Codec, Outgoing, StreamTap
from .openai_gemini_embeddings import usage_of

SINGLE, BATCH = "embedContent", "batchEmbedContents"
VERBS = (SINGLE, BATCH)

_raw_doc = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])


def _check(req: ew.EmbedRequest, where: str) -> ew.EmbedRequest:
    """One request's `content` is there and has parts; `where` names it in the client's terms."""
    if req.content is None:
        raise InvalidRequest(f"{where}: field required", param=where)
    if not req.content.parts:
        raise InvalidRequest(f"{where}.parts: at least one part is required", param=f"{where}.parts")
    if req.outputDimensionality is not None and req.outputDimensionality <= 0:
        raise InvalidRequest("outputDimensionality must be a positive integer", param="outputDimensionality")
    return req


def requests_of(out: Outgoing) -> list[ew.EmbedRequest]:
    """The client's embedding requests: the one of `:embedContent` (its field is `content`), or
    the batch's (`requests`, each with its own `content`)."""
    if out.endpoint == SINGLE:
        return [_check(ew.decode_client(ew.embed_request_decoder, out.body), "content")]
    items = ew.decode_client(ew.batch_request_decoder, out.body).requests
    if items is None:
        raise InvalidRequest("requests: field required", param="requests")
    if not items:
        raise InvalidRequest("requests: at least one request is required", param="requests")
    return [_check(r, f"requests[{i}].content") for i, r in enumerate(items)]


def texts_of(items: list[ew.EmbedRequest]) -> list[str]:
    """One text per request: its text parts joined by newlines."""
    return ["\n".join(p.text for p in r.content.parts if p.text) if r.content else "" for r in items]


def with_served_model(out: Outgoing) -> bytes:
    """The client's body with every `model` field naming the served model, all else as sent."""
    name = msgspec.Raw(ew.encoder.encode("models/" + out.upstream_model.removeprefix("models/")))
    doc = _raw_doc.decode(out.body)
    if out.endpoint == SINGLE:
        if "model" in doc:
            doc["model"] = name
        return ew.encoder.encode(doc)
    items = _raw_list.decode(doc["requests"])
    for item in items:
        item["model"] = name
    doc["requests"] = msgspec.Raw(ew.encoder.encode(items))
    return ew.encoder.encode(doc)


class _NotStreamed:
    def stream(self, out: Outgoing) -> StreamTap:
        raise InvalidRequest("embeddings cannot be streamed")


class GeminiEmbedPassthrough(_NotStreamed):
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        requests_of(out)  # a malformed body is the client's 400, before any upstream call
        return out.endpoint, with_served_model(out)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        resp = ew.decode_upstream(ew.embed_response_decoder, body, "Gemini")
        return body, usage_of(resp, texts_of(requests_of(out)))


class GeminiEmbedToOpenAI(_NotStreamed):
    def request(self, out: Outgoing) -> tuple[str, bytes]:
        items = requests_of(out)
        if any(p.text is None for r in items if r.content for p in r.content.parts):
            raise InvalidRequest("only text parts can be embedded by an OpenAI-compatible provider",
                                 param="content")
        dims = {r.outputDimensionality for r in items}
        if len(dims) > 1:
            raise InvalidRequest("every request of a batch must ask for the same outputDimensionality "
                                 "when an OpenAI-compatible provider serves it", param="outputDimensionality")
        call = ew.EmbeddingsRequest(model=out.upstream_model, input=texts_of(items),
                                    dimensions=dims.pop(), encoding_format="float")
        return "embeddings", ew.encoder.encode(call)

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        resp: ew.EmbeddingsResponse = ew.decode_upstream(ew.embeddings_response_decoder, body,
                                                          "OpenAI-compatible")
        texts = texts_of(requests_of(out))
        if len(resp.data) != len(texts):
            raise UpstreamError(f"the upstream sent {len(resp.data)} embeddings for {len(texts)} inputs")
        vectors = [ew.ContentEmbedding(values=ew.float_values(d.embedding))
                   for d in sorted(resp.data, key=lambda d: d.index)]
        single = out.endpoint == SINGLE
        doc = ew.EmbedResponse(embedding=vectors[0]) if single else ew.EmbedResponse(embeddings=vectors)
        if resp.usage is not None:
            usage = TokenUsage(prompt_tokens=resp.usage.prompt_tokens)
        else:
            usage = ew.estimated_usage(texts)
        return ew.encoder.encode(doc), usage


class Refused(_NotStreamed):
    """A family with no embeddings API: the client's 400, no upstream call."""

    def __init__(self, family: str) -> None:
        self.family = family

    def request(self, out: Outgoing) -> tuple[str, bytes]:
        raise InvalidRequest(f"`{out.model}` is served by an {self.family} provider, which has no "
                             f"embeddings API; {out.endpoint} needs a Gemini or OpenAI-compatible provider",
                             code="unsupported_endpoint")

    def response(self, body: bytes, out: Outgoing) -> tuple[bytes, TokenUsage | None]:
        raise AssertionError("never called: request() refuses")


BY_FAMILY: dict[Family, Codec] = {"gemini": GeminiEmbedPassthrough(), "openai": GeminiEmbedToOpenAI(),
                               "anthropic": Refused("Anthropic")}


def reaches_embeddings(provider_kind: str) -> bool:
    """Whether the embedding verbs can be served by a provider of this kind: its family has an
    embeddings API (gemini; openai, openai-compatible, azure and mock are the openai family)."""
    family = family_of(provider_kind)
    codec = BY_FAMILY.get(family) if is_family(family) else None
    return codec is not None and not isinstance(codec, Refused)

