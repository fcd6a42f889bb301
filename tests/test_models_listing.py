"""`GET /v1/models` is shared by the OpenAI and the Anthropic APIs: each SDK gets its own shape
(Anthropic's is chosen by its `anthropic-version` header) and its own error shape, listing
exactly what the key may call."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.native_support import KEY, Native, native

__all__ = ["native"]


def test_openai_sdk_lists_and_retrieves(native: Native) -> None:
    c = openai.OpenAI(base_url=f"{native.gw.url}/v1", api_key=KEY, max_retries=0)
    assert sorted(m.id for m in c.models.list()) == ["claude-x", "gemini-x", "gpt-x"]
    assert c.models.retrieve("gpt-x").owned_by == "oa"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")


def test_anthropic_sdk_lists_and_retrieves(native: Native) -> None:
    a = anthropic.Anthropic(base_url=native.gw.url, api_key=KEY, max_retries=0)
    page = a.models.list()
    assert [m.id for m in page.data] == ["claude-x", "gemini-x", "gpt-x"] and not page.has_more
    assert page.data[0].type == "model" and page.first_id == "claude-x" and page.last_id == "gpt-x"
    assert a.models.retrieve("claude-x").display_name == "claude-x"
    with pytest.raises(anthropic.NotFoundError) as missing:
        a.models.retrieve("nope")
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index, call-overload]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=native.gw.url, api_key="tg-wrong", max_retries=0).models.list()


def test_plain_x_api_key_without_anthropic_version_gets_openai_shape(native: Native) -> None:
    r = httpx.get(f"{native.gw.url}/v1/models", headers={"x-api-key": KEY})
    assert r.status_code == 200 and r.json()["object"] == "list"
