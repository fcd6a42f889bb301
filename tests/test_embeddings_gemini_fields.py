"""Gemini embeddings, the edges, through a real gateway process in front of the fake upstreams
(tests/native_support.py, plus an OpenAI-compatible `text-embedding-3-small` and a few aliases):
a body without its field (or with it empty) is a 400 naming `content` / `requests`, never
generateContent's `contents`, before any upstream call; `GET /v1beta/models` lists the
embedding verbs for embedding models; `outputDimensionality` reaches an OpenAI-compatible
upstream as `dimensions` while `taskType` and `title` (no OpenAI equivalent) are dropped, and
reach a Gemini upstream as sent."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import types

from tests.fakes.gemini_upstream import embed_values
from tests.native_support import KEY, Native, native_gateway

EXTRA = """
[[provider]]
id = "oa-embed"
kind = "openai-compatible"
base_url = "{oa}"
api_keys = ["sk-oa"]
models = ["text-embedding-3-small"]

[model.gem-embed]
targets = [{{ provider = "ge", model = "gemini-x" }}]

[model.claude-embed]
targets = [{{ provider = "an", model = "claude-x" }}]

[model.mixed-embed]
targets = [{{ provider = "ge", model = "gemini-x" }}, {{ provider = "an", model = "claude-x" }}]
"""
EMBED = ["embedContent", "batchEmbedContents", "countTokens"]
GENERATE = ["generateContent", "streamGenerateContent", "countTokens"]


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    yield from native_gateway(tmp_path_factory, "embed-fields", EXTRA)


def _gen(n: Native) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=n.gw.url, api_version="v1beta"))


# -- 1. a missing or empty field is named as the embedding APIs name it -------------------------

MISSING = [
    ("embedContent", b"", "`content`"),
    ("embedContent", b"{}", "content: field required"),
    ("embedContent", b'{"content": null}', "content: field required"),
    ("embedContent", b'{"content": {}}', "content.parts: at least one part"),
    ("embedContent", b'{"content": {"parts": []}, "taskType": "RETRIEVAL_QUERY"}', "content.parts"),
    ("batchEmbedContents", b"", "`requests`"),
    ("batchEmbedContents", b"{}", "requests: field required"),
    ("batchEmbedContents", b'{"requests": null}', "requests: field required"),
    ("batchEmbedContents", b'{"requests": []}', "requests: at least one request"),
    ("batchEmbedContents", b'{"requests": [{"model": "models/x"}]}', "requests[0].content: field required"),
    ("batchEmbedContents", b'{"requests": [{"content": {"parts": [{"text": "a"}]}}, {"content": {}}]}',
     "requests[1].content.parts: at least one part"),
]


@pytest.mark.parametrize("model", ["gemini-x", "gpt-x", "gem-embed"])
@pytest.mark.parametrize(("verb", "body", "says"), MISSING)
def test_missing_field_is_named(native: Native, model: str, verb: str, body: bytes, says: str) -> None:
    before = (len(native.ge.received), len(native.oa.received))
    answer = httpx.post(f"{native.gw.url}/v1beta/models/{model}:{verb}", content=body,
                        headers={"x-goog-api-key": KEY, "content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "status"}
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert says in error["message"] and not re.search(r"\bcontents\b", error["message"]), error
    assert (len(native.ge.received), len(native.oa.received)) == before  # no upstream call


def test_generate_content_still_asks_for_contents(native: Native) -> None:
    answer = httpx.post(f"{native.gw.url}/v1beta/models/gemini-x:generateContent", content=b"",
                        headers={"x-goog-api-key": KEY})
    assert answer.status_code == 400 and "`contents`" in answer.json()["error"]["message"]


def test_output_dimensionality_must_be_positive(native: Native) -> None:
    answer = httpx.post(f"{native.gw.url}/v1beta/models/text-embedding-3-small:embedContent",
                        headers={"x-goog-api-key": KEY},
                        json={"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 0})
    assert answer.status_code == 400 and "outputDimensionality" in answer.json()["error"]["message"]


# -- 2. the Gemini listing advertises the embedding verbs for embedding models ------------------

def test_listing_advertises_embedding_verbs(native: Native) -> None:
    answer = httpx.get(f"{native.gw.url}/v1beta/models", headers={"x-goog-api-key": KEY})
    assert answer.status_code == 200, answer.text
    methods = {m["name"]: m["supportedGenerationMethods"] for m in answer.json()["models"]}
    assert methods == {
        "models/text-embedding-3-small": EMBED,  # named for it, on an OpenAI-compatible provider
        "models/gem-embed": EMBED,  # an alias named for it, served by a gemini provider
        "models/claude-embed": GENERATE,  # anthropic has no embeddings API
        "models/mixed-embed": GENERATE,  # one of its targets cannot embed
        "models/gemini-x": GENERATE, "models/gpt-x": GENERATE, "models/claude-x": GENERATE,
    }
    g = _gen(native)  # held: a dropped client closes its pool
    by_name = {m.name: m.supported_actions for m in g.models.list()}
    assert by_name["models/gem-embed"] == EMBED and by_name["models/gpt-x"] == GENERATE
    assert g.models.get(model="text-embedding-3-small").supported_actions == EMBED
    assert g.models.get(model="gemini-x").supported_actions == GENERATE


# -- 3. what reaches each upstream -----------------------------------------------------------

def test_task_type_and_title_dropped_for_openai(native: Native) -> None:
    g = _gen(native)
    got = g.models.embed_content(
        model="text-embedding-3-small", contents=["alpha", "beta"],
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Doc", output_dimensionality=3))
    assert [e.values for e in got.embeddings or ()] == [[0.1 + i, 0.6 + i, 1.1 + i] for i in range(2)]
    sent = [r for r in native.oa.received if r.path.endswith("/embeddings")][-1].json()
    assert sent == {"model": "text-embedding-3-small", "input": ["alpha", "beta"], "dimensions": 3,
                    "encoding_format": "float"}
    answer = httpx.post(f"{native.gw.url}/v1beta/models/text-embedding-3-small:embedContent",
                        headers={"x-goog-api-key": KEY},
                        json={"content": {"parts": [{"text": "q"}]}, "taskType": "RETRIEVAL_QUERY",
                              "title": "t", "outputDimensionality": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"embedding": {"values": [0.1, 0.6]}}
    sent = [r for r in native.oa.received if r.path.endswith("/embeddings")][-1].json()
    assert sent == {"model": "text-embedding-3-small", "input": ["q"], "dimensions": 2,
                    "encoding_format": "float"}


def test_task_type_and_title_kept_for_gemini(native: Native) -> None:
    g = _gen(native)
    got = g.models.embed_content(
        model="gem-embed", contents=["alpha"],
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Doc", output_dimensionality=2))
    assert [e.values for e in got.embeddings or ()] == [embed_values("alpha", 2)]
    sent = [r for r in native.ge.received if r.path.endswith(":batchEmbedContents")][-1].json()
    content = {"parts": [{"text": "alpha"}], "role": "user"}  # as google-genai sends it
    assert sent["requests"] == [{"model": "models/gemini-x", "content": content,
                                 "taskType": "RETRIEVAL_DOCUMENT", "title": "Doc", "outputDimensionality": 2}]
