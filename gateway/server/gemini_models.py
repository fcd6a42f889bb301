"""What `GET /v1beta/models` (Gemini's model listing) says each model supports.

The bundle has no capability field, so a model's kind is read from what it does know: a model
is an *embedding model* when its name, or the upstream name of one of its targets, contains
"embed" (`text-embedding-3-small`, `gemini-embedding-001`, `nomic-embed-text`...) and every
one of its targets is on a provider whose family has an embeddings API (gemini, or the
OpenAI family: openai, openai-compatible, azure, mock). Like Gemini's own listing, embedding
models advertise `embedContent` / `batchEmbedContents` and not the generation verbs; every
other model advertises `generateContent` / `streamGenerateContent`. `countTokens` is answered
for every model (see count_tokens.py), so every model lists it.
"""

from __future__ import annotations

from typing import Any

from ..config.snapshot import Snapshot
from ..providers.translate.gemini_embeddings import VERBS as EMBED_VERBS
from ..providers.translate.gemini_embeddings import reaches_embeddings

GENERATION_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
EMBEDDING_METHODS = (*EMBED_VERBS, "countTokens")
EMBED_HINT = "embed"


def is_embedding_model(snap: Snapshot, name: str) -> bool:
    """`name` is named for embeddings and each of its targets can serve the embedding verbs."""
    route = snap.routes.get(name)
    if route is None:
        return False
    targets = [t for tier in route.tiers for t in tier]
    named = EMBED_HINT in name.lower() or any(EMBED_HINT in t.model.lower() for t in targets)
    return named and bool(targets) and all(
        t.provider in snap.providers and reaches_embeddings(snap.providers[t.provider].kind)
        for t in targets)


def supported_methods(snap: Snapshot, name: str) -> list[str]:
    return list(EMBEDDING_METHODS if is_embedding_model(snap, name) else GENERATION_METHODS)


def gemini_model(snap: Snapshot, name: str) -> dict[str, Any]:
    """One entry of the listing, as Gemini's `models.list` / `models.get` answer it."""
    return {"name": f"models/{name}", "displayName": name,
            "supportedGenerationMethods": supported_methods(snap, name)}
