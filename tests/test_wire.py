"""Unit tests of the OpenAI wire helpers: head decode, minimal rewrites, the SSE tap, and the
httpx transport seam (`httpx.MockTransport`)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.config.types import Timeouts
from gateway.errors import InvalidRequest
from gateway.providers.translate.openai_openai import SseTap
from gateway.providers.transport.base import UpstreamConnectError
from gateway.providers.transport.clients import HttpxClient
from gateway.providers.wire.head import decode_head, form_head, rewrite_form_model, rewrite_json


def test_head_reads_only_what_it_needs() -> None:
    head = decode_head(b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],'
                       b'"stream_options":{"include_usage":true},"max_completion_tokens":9,"weird":{"a":1}}')
    assert head.model == "m" and head.stream and head.client_wants_usage
    assert len(head.messages or []) == 1 and head.token_limit == 9


@pytest.mark.parametrize(("body", "fragment"), [
    (b"[1,2]", "Expected `object`"),
    (b'{"model": 1}', "`model`"),
    (b'{"stream": "yes"}', "`stream`"),
    (b"{", "not valid JSON"),
])
def test_head_errors_are_clear(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode_head(body)
    assert fragment in err.value.message


def test_rewrite_keeps_unknown_fields_and_their_bytes() -> None:
    body = b'{"model":"alias","vendor":{"x":[1,2.50,"\\u00e9"]},"stream":true,"stream_options":{"foo":1}}'
    out = json.loads(rewrite_json(body, "real-model", want_usage=True))
    assert out["model"] == "real-model"
    assert out["stream_options"] == {"foo": 1, "include_usage": True}
    assert b'[1,2.50,"\\u00e9"]' in rewrite_json(body, "real-model", want_usage=True)


def test_multipart_model_rewrite() -> None:
    body = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-alias\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\nRIFF....\r\n--b--\r\n")
    assert form_head(body).model == "whisper-alias"
    rewritten = rewrite_form_model(body, "whisper-1")
    assert form_head(rewritten).model == "whisper-1" and b"RIFF...." in rewritten


def _event(doc: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def test_sse_tap_strips_usage_and_handles_split_events() -> None:
    text = _event({"choices": [{"delta": {"content": "Hello"}}]})
    usage = _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                                             "prompt_tokens_details": {"cached_tokens": 3}}})
    stream = text + usage + b"data: [DONE]\n\n"
    tap = SseTap(strip_usage=True)
    out = b"".join(tap.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)) + tap.flush()
    assert out == text + b"data: [DONE]\n\n"
    assert tap.usage is not None and tap.usage.prompt_tokens == 7 and tap.usage.cached_tokens == 3
    assert tap.chars == 5

    keep = SseTap(strip_usage=False)
    assert b"".join(keep.feed(stream[i:i + 5]) for i in range(0, len(stream), 5)) == stream
    assert keep.usage is not None and keep.usage.completion_tokens == 2


def test_httpx_mock_transport_seam() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/down"):
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"ok": True})

    async def run() -> None:
        client = HttpxClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        response = await client.send("POST", "http://up/v1/x", {"authorization": "Bearer k"}, b"{}", Timeouts())
        assert response.status == 200 and json.loads(await response.read()) == {"ok": True}
        with pytest.raises(UpstreamConnectError):
            await client.send("POST", "http://up/v1/down", {}, b"{}", Timeouts())
        await client.aclose()

    asyncio.run(run())
    assert seen[0].headers["authorization"] == "Bearer k"


def test_sse_tap_reads_responses_api_usage() -> None:
    stream = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
              b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r",'
              b'"usage":{"input_tokens":9,"output_tokens":4,"input_tokens_details":{"cached_tokens":2},'
              b'"output_tokens_details":{"reasoning_tokens":1}}}}\n\n')
    tap = SseTap(strip_usage=True)
    assert tap.feed(stream) == stream  # nothing stripped from a Responses API stream
    assert tap.usage is not None
    assert (tap.usage.prompt_tokens, tap.usage.completion_tokens) == (9, 4)
    assert (tap.usage.cached_tokens, tap.usage.reasoning_tokens) == (2, 1)
    assert tap.chars == 2
