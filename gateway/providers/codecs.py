"""The codec table: which codec (translate/codec.py's protocol) carries a request of one client
family to an upstream of one family (gateway/core/family.py), and back.

Three kinds of entries, the most specific winning in `codec_for`:
1. `KIND_CODECS` (client family, provider kind, client endpoint): where the kinds of one family
   differ in what they serve (the Responses API: `openai` and `azure` serve it, so it passes
   through; `openai-compatible` servers and the mock do not, so it goes over chat);
2. `CODECS` with a client endpoint: one endpoint of a pair (embeddings, the Responses API);
3. `CODECS` with None: the pair's general codec (generation).

Adding a translator: write `translate/<client>_<upstream>.py` and add its entry here; nothing
registers itself on import.
"""

from __future__ import annotations

import functools

from ..core.family import Family, family_of, is_family
from .translate.anthropic_openai import AnthropicToOpenAI
from .translate.codec import Codec
from .translate.gemini_embeddings import BY_FAMILY as GEMINI_EMBEDDINGS
from .translate.gemini_embeddings import VERBS as GEMINI_EMBED_VERBS
from .translate.gemini_openai import GeminiToOpenAI
from .translate.native_passthrough import AnthropicPassthrough, GeminiPassthrough
from .translate.openai_anthropic import OpenAIToAnthropic
from .translate.openai_bedrock import OpenAIToBedrock
from .translate.openai_gemini import OpenAIToGemini
from .translate.openai_gemini_embeddings import OpenAIEmbeddingsToGemini
from .translate.openai_openai import OpenAICodec
from .translate.responses_chat import ENDPOINT as RESPONSES
from .translate.responses_chat import ResponsesToChat
from .translate.unsupported import Unsupported
from .translate.via_chat import ViaChat


class NoCodec(Exception):
    """This client format cannot reach this upstream family (yet)."""


_responses = ResponsesToChat()

# (client family, upstream family, client endpoint, or None for the pair's general codec)
CODECS: dict[tuple[Family, Family, str | None], Codec] = {
    # same family: pass-through apart from the model name
    ("openai", "openai", None): OpenAICodec(),
    ("anthropic", "anthropic", None): AnthropicPassthrough(),
    ("gemini", "gemini", None): GeminiPassthrough(),
    # to and from OpenAI chat, the common vocabulary
    ("openai", "anthropic", None): OpenAIToAnthropic(),
    ("openai", "gemini", None): OpenAIToGemini(),
    ("anthropic", "openai", None): AnthropicToOpenAI(),
    ("gemini", "openai", None): GeminiToOpenAI(),
    # through chat; file_urls: document URLs ride in chat file parts on these internal hops
    # (both ends take URLs)
    ("anthropic", "gemini", None): ViaChat(AnthropicToOpenAI(file_urls=True), OpenAIToGemini()),
    ("gemini", "anthropic", None): ViaChat(GeminiToOpenAI(file_urls=True), OpenAIToAnthropic()),
    # AWS Bedrock's Converse: from chat, and the other clients through chat
    ("openai", "bedrock", None): OpenAIToBedrock(),
    ("anthropic", "bedrock", None): ViaChat(AnthropicToOpenAI(), OpenAIToBedrock()),
    ("gemini", "bedrock", None): ViaChat(GeminiToOpenAI(), OpenAIToBedrock()),
    ("openai", "bedrock", RESPONSES): ViaChat(_responses, OpenAIToBedrock()),
    **{("gemini", "bedrock", verb): Unsupported("a Bedrock provider") for verb in GEMINI_EMBED_VERBS},
    # one client endpoint
    ("openai", "gemini", "embeddings"): OpenAIEmbeddingsToGemini(),
    ("openai", "anthropic", RESPONSES): ViaChat(_responses, OpenAIToAnthropic()),
    ("openai", "gemini", RESPONSES): ViaChat(_responses, OpenAIToGemini()),
    **{
        ("gemini", upstream, verb): codec
        for verb in GEMINI_EMBED_VERBS
        for upstream, codec in GEMINI_EMBEDDINGS.items()
    },
}

# (client family, provider kind, client endpoint)
KIND_CODECS: dict[tuple[Family, str, str], Codec] = {
    ("openai", "openai-compatible", RESPONSES): ViaChat(_responses, OpenAICodec()),
    ("openai", "mock", RESPONSES): ViaChat(_responses, OpenAICodec()),
    # Vertex AI speaks Gemini's generateContent, but its embeddings are another API (`:predict`)
    ("openai", "vertex", "embeddings"): Unsupported("a Vertex AI provider"),
    **{("gemini", "vertex", verb): Unsupported("a Vertex AI provider") for verb in GEMINI_EMBED_VERBS},
}


@functools.lru_cache(maxsize=512)  # a handful of (family, kind, endpoint) triples, asked per request
def codec_for(client_family: str, provider_kind: str, endpoint: str | None = None) -> Codec:
    """The codec for a client family's request to a provider kind: the kind's entry for the
    endpoint, else the pair of families' entry for the endpoint, else the pair's general one."""
    upstream = family_of(provider_kind)
    codec = None
    if is_family(client_family) and is_family(upstream):
        if endpoint:
            codec = KIND_CODECS.get((client_family, provider_kind, endpoint))
            codec = codec or CODECS.get((client_family, upstream, endpoint))
        codec = codec or CODECS.get((client_family, upstream, None))
    if codec is None:
        raise NoCodec(f"{client_family} requests cannot be sent to a {provider_kind} provider")
    return codec
