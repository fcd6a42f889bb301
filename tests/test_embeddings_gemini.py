"""Embeddings and Gemini, end to end through a real gateway process in front of the three fake
upstreams (tests/native_support.py): OpenAI `/v1/embeddings` to a Gemini provider (translated to
`:batchEmbedContents`), and Gemini's `:embedContent` / `:batchEmbedContents` forwarded to a
Gemini provider or translated to an OpenAI-compatible one's `/v1/embeddings`; an Anthropic
target is refused in Gemini's error shape. Each leaves a usage row (Gemini's usage estimated)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.gemini_upstream import FakeGemini, embed_values
from tests.fakes.openai_upstream import FakeUpstream
from tests.native_support import KEY, Native, native_gateway

ALIAS = """
[model.gem-embed]
targets = [{{ provider = "ge", model = "gemini-x" }}]
"""


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    """The native fixture's three upstreams, plus `gem-embed`: an alias served by gemini-x."""
    yield from native_gateway(tmp_path_factory, "embed", ALIAS)


def _openai(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


def _gen(n: Native, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=n.gw.url, api_version=version))


def _row(n: Native, request_id: str) -> dict[str, Any]:
    rows = n.gw.usage_rows(f"SELECT * FROM usage WHERE request_id = '{request_id}'")
    assert len(rows) == 1, rows
    return rows[0]


def _last(fake: FakeGemini | FakeUpstream, suffix: str) -> Any:
    got = [r for r in fake.received if r.path.endswith(suffix)]
    assert got, f"the fake received no {suffix}"
    return got[-1]


# -- OpenAI client -> Gemini upstream ---------------------------------------------------------

def test_openai_embeddings_to_gemini(native: Native) -> None:
    texts = ["a", "hello", "ninechars"]
    raw = _openai(native).embeddings.with_raw_response.create(model="gem-embed", input=texts,
                                                              encoding_format="float")
    result = raw.parse()
    assert result.model == "gem-embed" and result.object == "list"
    assert [d.index for d in result.data] == [0, 1, 2]
    assert [d.embedding for d in result.data] == [embed_values(t, None) for t in texts]
    chars = sum(map(len, texts))
    assert result.usage.prompt_tokens == result.usage.total_tokens == math.ceil(chars / 4)
    got = _last(native.ge, ":batchEmbedContents")
    assert got.path == "/v1beta/models/gemini-x:batchEmbedContents"
    assert got.headers["x-goog-api-key"] == "sk-gem" and KEY not in str(got.headers)
    assert got.json() == {"requests": [{"model": "models/gemini-x", "content": {"parts": [{"text": t}]}}
                                       for t in texts]}
    row = _row(native, raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["requested_model"], row["served_model"]) == (
        "embeddings", "ge", "gem-embed", "gemini-x")
    assert (row["status"], row["prompt_tokens"], row["usage_source"]) == (200, math.ceil(chars / 4), "estimated")


def test_openai_embeddings_dimensions_and_base64(native: Native) -> None:
    # the SDK asks for base64 by default and decodes it back to floats
    result = _openai(native).embeddings.create(model="gemini-x", input="four", dimensions=3)
    assert result.data[0].embedding == embed_values("four", 3)
    got = _last(native.ge, ":batchEmbedContents").json()
    assert got["requests"][0]["outputDimensionality"] == 3
    # on the wire: little-endian float32, base64, as OpenAI sends it
    answer = httpx.post(f"{native.gw.url}/v1/embeddings", headers={"authorization": f"Bearer {KEY}"},
                        json={"model": "gemini-x", "input": "four", "encoding_format": "base64"})
    assert answer.status_code == 200, answer.text
    encoded = answer.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert list(struct.unpack("<4f", base64.b64decode(encoded))) == embed_values("four", None)


def test_openai_token_arrays_are_refused_for_gemini(native: Native) -> None:
    before = len(native.ge.received)
    with pytest.raises(openai.BadRequestError) as err:
        _openai(native).embeddings.create(model="gemini-x", input=[[1, 2, 3]])
    assert "token arrays" in str(err.value) and len(native.ge.received) == before


# -- Gemini client -> Gemini upstream (forwarded) ---------------------------------------------

def test_genai_embed_content_to_gemini(native: Native) -> None:
    g = _gen(native)  # held: a dropped client closes its pool
    got = g.models.embed_content(model="gem-embed", contents=["hello", "world!"],
                                            config=types.EmbedContentConfig(output_dimensionality=2))
    assert [e.values for e in got.embeddings or ()] == [embed_values("hello", 2), embed_values("world!", 2)]
    sent = _last(native.ge, ":batchEmbedContents")
    assert sent.path == "/v1beta/models/gemini-x:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == "sk-gem" and KEY not in str(sent.headers)
    assert [r["model"] for r in sent.json()["requests"]] == ["models/gemini-x"] * 2
    assert all(r["outputDimensionality"] == 2 for r in sent.json()["requests"])
    rows = native.gw.usage_rows("SELECT * FROM usage WHERE endpoint = 'batchEmbedContents' AND provider = 'ge'")
    assert rows and rows[-1]["served_model"] == "gemini-x" and rows[-1]["requested_model"] == "gem-embed"
    assert (rows[-1]["prompt_tokens"], rows[-1]["usage_source"]) == (math.ceil(11 / 4), "estimated")


def test_embed_content_single_under_v1(native: Native) -> None:
    answer = httpx.post(f"{native.gw.url}/v1/models/gem-embed:embedContent", headers={"x-goog-api-key": KEY},
                        json={"model": "models/gem-embed", "content": {"parts": [{"text": "hey"}]}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"embedding": {"values": embed_values("hey", None)}}
    sent = _last(native.ge, ":embedContent")
    assert sent.path == "/v1beta/models/gemini-x:embedContent" and sent.json()["model"] == "models/gemini-x"
    row = _row(native, answer.headers["x-request-id"])
    assert (row["endpoint"], row["prompt_tokens"], row["usage_source"]) == ("embedContent", 1, "estimated")


# -- Gemini client -> OpenAI-compatible upstream (translated) ---------------------------------

def test_genai_embed_content_to_openai(native: Native) -> None:
    g = _gen(native)
    got = g.models.embed_content(model="gpt-x", contents=["one", "two", "three"],
                                            config=types.EmbedContentConfig(output_dimensionality=2))
    # the fake lists its vectors last to first; the gateway orders them by index
    assert [e.values for e in got.embeddings or ()] == [[0.1 + i, 0.6 + i] for i in range(3)]
    sent = _last(native.oa, "/embeddings")
    assert sent.json() == {"model": "gpt-x", "input": ["one", "two", "three"], "dimensions": 2,
                           "encoding_format": "float"}
    assert sent.headers["Authorization"] == "Bearer sk-oa"
    rows = native.gw.usage_rows("SELECT * FROM usage WHERE endpoint = 'batchEmbedContents' AND provider = 'oa'")
    assert rows and (rows[-1]["prompt_tokens"], rows[-1]["usage_source"]) == (6, "upstream")


def test_embed_content_single_to_openai(native: Native) -> None:
    answer = httpx.post(f"{native.gw.url}/v1beta/models/gpt-x:embedContent", headers={"x-goog-api-key": KEY},
                        json={"content": {"parts": [{"text": "solo"}]}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"embedding": {"values": [0.1, 0.2, 0.3]}}
    assert _last(native.oa, "/embeddings").json()["input"] == ["solo"]


# -- refused ----------------------------------------------------------------------------------

def test_anthropic_target_is_refused_in_gemini_shape(native: Native) -> None:
    before = len(native.an.received)
    g = _gen(native)
    with pytest.raises(genai_errors.ClientError) as err:
        g.models.embed_content(model="claude-x", contents=["hi"])
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert "embeddings" in (err.value.message or "") and len(native.an.received) == before
    answer = httpx.post(f"{native.gw.url}/v1beta/models/claude-x:embedContent", headers={"x-goog-api-key": KEY},
                        json={"content": {"parts": [{"text": "hi"}]}})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    row = _row(native, answer.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["error_type"]) == ("embedContent", 400, "unsupported_endpoint")


def test_gemini_embed_needs_a_key_and_content(native: Native) -> None:
    url = f"{native.gw.url}/v1beta/models/gemini-x:batchEmbedContents"
    assert httpx.post(url, json={"requests": []}).json()["error"]["status"] == "UNAUTHENTICATED"
    bad = httpx.post(url, headers={"x-goog-api-key": KEY}, json={"requests": [{"model": "models/gemini-x"}]})
    assert bad.status_code == 400 and "content" in bad.json()["error"]["message"]
