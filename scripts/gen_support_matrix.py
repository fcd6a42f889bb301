"""Write docs/support.md, the endpoint x provider-kind support matrix, from the code itself
(`python scripts/gen_support_matrix.py`): the route table (gateway/server/routes.py) gives the
endpoints, gateway/core/family.py the provider kinds, and each cell is what the codec table
(gateway/providers/codecs.py: CODECS, KIND_CODECS) does with a small request of that endpoint,
so the matrix cannot drift from the code; tests/test_support_matrix.py checks it is current."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "support.md"

HEADER = """# Endpoint x provider-kind support

Generated from the route table and the codec table by `scripts/gen_support_matrix.py`: do not
edit by hand (the test suite fails when this file and the code differ). A row is a client
endpoint, a column the `kind` of the provider the model routes to.

- **pass-through**: the body goes upstream as sent (model name and auth replaced; for the OpenAI
  family also `stream_options.include_usage` when needed). Whether the upstream itself serves
  that endpoint is up to it (an `openai-compatible` server may lack `/v1/audio/speech`; `mock`
  answers every endpoint).
- **translated**: the request and its answer (streamed or not) are converted between API
  families (see the README's "Anthropic and Gemini" and "The Responses API").
- **forwarded** / **estimated**: token counting goes to the provider's own count endpoint, or is
  a local estimate (free either way).
- **no**: a 400 `unsupported_endpoint` in the client's shape (or, when no format of that family
  reaches the kind at all, a failed attempt that routing moves past).

`vertex` is a Vertex AI provider serving Gemini models, `vertex-anthropic` one with
`publisher = "anthropic"` (docs/providers.md).
"""

BODIES = {
    "chat/completions": b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}',
    "responses": b'{"model": "m", "input": "Hi"}',
    "embeddings": b'{"model": "m", "input": "Hi"}',
    "messages": b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}',
    "generateContent": b'{"contents": [{"parts": [{"text": "Hi"}]}]}',
    "embedContent": b'{"content": {"parts": [{"text": "Hi"}]}}',
    "batchEmbedContents": b'{"requests": [{"content": {"parts": [{"text": "Hi"}]}}]}',
}
DEFAULT_BODY = b'{"model": "m", "input": "Hi", "prompt": "Hi"}'


def _cell(family: str, kind: str, endpoint: str) -> str:
    from gateway.core.family import family_of
    from gateway.errors import InvalidRequest
    from gateway.providers.codecs import NoCodec, codec_for
    from gateway.providers.translate.codec import Outgoing

    try:
        codec = codec_for(family, kind, endpoint)
    except NoCodec:
        return "no"
    out = Outgoing(endpoint=endpoint, body=BODIES.get(endpoint, DEFAULT_BODY), model="m",
                   upstream_model="m", stream=False, client_wants_usage=False)
    try:
        upstream_endpoint, _ = codec.request(out)
    except InvalidRequest as exc:
        if exc.code == "unsupported_endpoint":
            return "no"
        upstream_endpoint = ""
    if family_of(kind) == family and upstream_endpoint == endpoint:  # same family, same endpoint
        return "pass-through"
    return "translated"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from gateway.core.family import FAMILY_OF_KIND
    from gateway.server import native
    from gateway.server.routes import RELAYED

    kinds = list(FAMILY_OF_KIND)
    rows: list[tuple[str, list[str]]] = []
    for endpoint in RELAYED:
        rows.append((f"`POST /v1/{endpoint}`", [_cell("openai", k, endpoint) for k in kinds]))
    rows.append(("`POST /v1/messages`", [_cell("anthropic", k, "messages") for k in kinds]))
    rows.append(("`POST /v1/messages/count_tokens`",
                 ["forwarded" if k == "anthropic" else "estimated" for k in kinds]))  # as count_tokens.py
    rows.append(("`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`",
                 [_cell("gemini", k, "generateContent") for k in kinds]))
    rows.append(("`POST /v1beta/models/{model}:countTokens`",
                 ["forwarded" if k == "gemini" else "estimated" for k in kinds]))
    for verb in native.EMBED_VERBS:
        rows.append((f"`POST /v1beta/models/{{model}}:{verb}`", [_cell("gemini", k, verb) for k in kinds]))
    rows.append(("`/mj/submit/*`, `/mj/task/...` (docs/midjourney.md)",
                 ["pass-through" if k == "midjourney" else "no" for k in kinds]))
    lines = [
        "| endpoint | " + " | ".join(f"`{k}`" for k in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
        *(f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows),
    ]
    footer = (
        "\nGemini paths also answer under `/v1/models/...`. `GET /v1/models`, `GET /v1beta/models`, "
        "`/healthz`, `/readyz`, `/metrics` and `/admin/*` do not reach a provider: see "
        "[the admin API](admin-api.md).\n"
    )
    return HEADER + "\n" + "\n".join(lines) + "\n" + footer


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
