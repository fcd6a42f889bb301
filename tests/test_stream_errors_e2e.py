"""An upstream that reports an error in the middle of a stream (after a 200 and some text): the
client gets the error in its own API shape, and the usage row says what happened
(`error_type = upstream_stream_error:<type>`) instead of looking like a clean answer."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.native_support import KEY, Native, native

__all__ = ["native"]
HI: Any = [{"role": "user", "content": "hi"}]


def _rows(n: Native, request_id: str) -> list[dict[str, Any]]:
    return n.gw.usage_rows("SELECT status, error_type, stream, completion_tokens FROM usage "
                           f"WHERE request_id = '{request_id}'")


def test_openai_client_sees_the_error_and_the_row_records_it(native: Native) -> None:
    native.oa.script("gpt-x", times=1, error_after=2)
    c = openai.OpenAI(base_url=f"{native.gw.url}/v1", api_key=KEY, max_retries=0)
    with c.chat.completions.with_streaming_response.create(model="gpt-x", messages=HI, stream=True) as r:
        request_id = r.headers["x-request-id"]
        with pytest.raises(openai.APIError, match="upstream overloaded"):
            for _ in r.parse():
                pass
    rows = _rows(native, request_id)
    assert rows and rows[0]["status"] == 200 and rows[0]["stream"]
    assert rows[0]["error_type"] == "upstream_stream_error:server_error"


def test_anthropic_client_of_an_openai_upstream_gets_an_error_event(native: Native) -> None:
    native.oa.script("gpt-x", times=1, error_after=2)
    a = anthropic.Anthropic(base_url=native.gw.url, api_key=KEY, max_retries=0)
    with a.messages.with_streaming_response.create(model="gpt-x", max_tokens=50, messages=HI,
                                                  stream=True) as r:
        request_id = r.headers["x-request-id"]
        with pytest.raises(anthropic.APIStatusError, match="upstream overloaded"):
            for _ in r.parse():
                pass
    rows = _rows(native, request_id)
    assert rows and rows[0]["error_type"] == "upstream_stream_error:server_error"
    assert rows[0]["completion_tokens"] > 0  # the text relayed before the error is still billed
