"""Malformed and cut request bodies, written by hand over raw sockets to a real gateway process:
bad chunked framing is a 400 (401 without a key: the key is checked first) in the endpoint's
family's shape with its `x-request-id`, a client gone mid-upload is recorded as 499, deeply
nested JSON is a 400 on the Midjourney endpoints, Gemini's /v1/models/ alias paths answer in
Gemini's shape, and an IP refusal is recorded under the key and group that presented it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.server import http, native
from gateway.server.app import App
from gateway.server.envelope import serve
from gateway.server.relay import relay_endpoint
from gateway.settings import ServeSettings
from tests.gateway_process import GatewayProcess
from tests.intake_support import CHAT, FAR, KEY, Answer, intake_gateway, open_request, raw_request
from tests.mj_support import FakeProto, FakeScope, ListRecorder, _Headers

KEY_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key",
              "midjourney": "mj-api-secret"}
GEMINI_VERBS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")
BILLED = {  # path -> (family, endpoint of its usage row)
    "/v1/chat/completions": ("openai", "chat/completions"),
    "/v1/responses": ("openai", "responses"),
    "/v1/messages": ("anthropic", "messages"),
    "/v1/messages/count_tokens": ("anthropic", "messages/count_tokens"),
    "/v1beta/models/m:generateContent": ("gemini", "generateContent"),
    # both generation verbs are recorded as generateContent (the row's `stream` tells them apart)
    **{f"/v1/models/m:{verb}": ("gemini", "generateContent" if verb == "streamGenerateContent" else verb)
       for verb in GEMINI_VERBS},
    "/mj/submit/imagine": ("midjourney", "mj/submit/imagine"),
}
FRAMING = {  # what follows the head of a `transfer-encoding: chunked` request
    "bad-chunk-size": (b"zz\r\n{}\r\n0\r\n\r\n", False),
    "not-chunked": (b"{}", False),
    "cut-at-eof": (b"10\r\n{\"model\": ", True),  # the client half-closes: it still reads
}
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with intake_gateway(tmp_path_factory.mktemp("malformed")) as gateway:
        yield gateway


def headers_for(family: str, key: str | None, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", **extra}
    if key is not None:
        headers[KEY_HEADER[family]] = f"Bearer {key}" if family == "openai" else key
    return headers


def assert_shape(family: str, answer: Answer) -> dict[str, Any]:
    doc = json.loads(answer.body)
    if family == "openai":
        assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "code", "param"}
    elif family == "anthropic":
        assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"}
    elif family == "gemini":
        assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "status"}
        assert doc["error"]["code"] == answer.status
    else:
        assert set(doc) == {"code", "description", "result", "properties"}
    assert "Traceback" not in answer.body.decode()
    return dict(doc)


def rows_by_id(gw: GatewayProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    listed = ", ".join(f"'{i}'" for i in ids)
    sql = f'SELECT request_id, status, error_type, key_id, "group", endpoint FROM usage WHERE request_id IN ({listed})'
    rows = gw.usage_rows(sql, until=lambda rows: len(rows) == len(ids))
    return {row.pop("request_id"): row for row in rows}


@pytest.mark.parametrize("case", sorted(FRAMING))
def test_bad_chunked_framing_is_a_400_in_the_family_shape(gw: GatewayProcess, case: str) -> None:
    tail, half_close = FRAMING[case]
    expected = {}
    for path, (family, endpoint) in BILLED.items():
        answer = raw_request(gw.port, path, headers_for(family, KEY, **{"transfer-encoding": "chunked"}),
                             tail, half_close=half_close)
        assert answer is not None, f"{case} {path}: no answer"
        assert answer.status == 400, f"{case} {path}: {answer.status} {answer.body[:200]!r}"
        assert "malformed" in json.dumps(assert_shape(family, answer))
        expected[answer.headers["x-request-id"]] = endpoint
    rows = rows_by_id(gw, list(expected))
    for rid, endpoint in expected.items():
        assert rows[rid] == {"status": 400, "error_type": "malformed_body", "key_id": "client",
                             "group": "team", "endpoint": endpoint}


def test_without_a_key_bad_framing_is_a_401_not_read(gw: GatewayProcess) -> None:
    for path, (family, _) in BILLED.items():
        answer = raw_request(gw.port, path, headers_for(family, None, **{"transfer-encoding": "chunked"}),
                             b"zz\r\n{}\r\n")
        assert answer is not None and answer.status == 401, path
        assert_shape(family, answer)
        assert answer.headers["x-request-id"].startswith("req_")


def test_a_client_gone_mid_upload_is_recorded_as_499(gw: GatewayProcess) -> None:
    for path in ("/v1/embeddings", "/v1/messages", "/v1/models/m:embedContent", "/mj/submit/imagine"):
        family = BILLED.get(path, ("openai", ""))[0]
        sock = open_request(gw.port, path, headers_for(family, KEY, **{"content-length": "1000"}), b'{"model":')
        time.sleep(0.2)
        sock.close()  # nothing more: 991 bytes short
    endpoints = ("embeddings", "messages", "embedContent", "mj/submit/imagine")
    sql = ('SELECT endpoint, status, error_type, key_id, cancelled FROM usage WHERE status = 499 AND endpoint IN '
           f"({', '.join(repr(e) for e in endpoints)})")
    rows = gw.usage_rows(sql, until=lambda rows: len(rows) == len(endpoints))
    assert sorted(rows, key=lambda r: r["endpoint"]) == [
        {"endpoint": e, "status": 499, "error_type": "client_disconnected", "key_id": "client", "cancelled": True}
        for e in sorted(endpoints)
    ]


@pytest.mark.parametrize("path", ["/mj/submit/imagine", "/mj/submit/action", "/mj/submit/blend",
                                  "/mj/task/list-by-condition"])
def test_deeply_nested_json_to_midjourney_is_a_400(gw: GatewayProcess, path: str) -> None:
    body = b'{"prompt": "x", "taskId": "t", "customId": "c", "extra": ' + DEEP + b"}"
    r = httpx.post(gw.url + path, content=body, headers={"mj-api-secret": KEY}, timeout=10)
    assert r.status_code == 400
    doc = r.json()
    assert doc["code"] == 4 and "nested too deeply" in doc["description"], doc
    if "/submit/" in path:
        rows = rows_by_id(gw, [r.headers["x-request-id"]])
        assert next(iter(rows.values()))["status"] == 400


def test_the_error_shape_knows_every_gemini_verb() -> None:
    assert http.GEMINI_VERBS == {*native.GEMINI_VERBS, native.COUNT_VERB, *native.EMBED_VERBS} == set(GEMINI_VERBS)
    assert http.family_of("/v1/models/m:embedContent") == "gemini"
    assert http.family_of("/v1/models/ft:gpt-4o:acme::abc123") == "openai"  # OpenAI ids hold colons too


@pytest.mark.parametrize("verb", GEMINI_VERBS)
def test_gemini_alias_paths_answer_in_gemini_shape(gw: GatewayProcess, verb: str) -> None:
    path = f"/v1/models/m:{verb}"
    r = httpx.put(gw.url + path, content=b"{}", timeout=10)
    assert r.status_code == 405 and set(r.json()["error"]) == {"code", "message", "status"}
    r = httpx.post(gw.url + path, content=b"{}", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = httpx.post(gw.url + path, content=b"{" * 10, headers={"x-goog-api-key": KEY}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert r.headers["x-request-id"].startswith("req_")


def test_an_ip_refusal_is_recorded_under_its_key_and_group(gw: GatewayProcess) -> None:
    ids = {}
    for path in ("/v1/chat/completions", "/v1/messages", "/v1beta/models/m:generateContent",
                 "/v1/messages/count_tokens", "/mj/submit/imagine"):
        family, endpoint = BILLED[path]
        answer = raw_request(gw.port, path, headers_for(family, FAR, **{"content-length": str(len(CHAT))}), CHAT)
        assert answer is not None and answer.status == 403, path
        assert "may not be used from 127.0.0.1" in json.dumps(assert_shape(family, answer))
        ids[answer.headers["x-request-id"]] = endpoint
    rows = rows_by_id(gw, list(ids))
    for rid, endpoint in ids.items():
        assert rows[rid] == {"status": 403, "error_type": "ip_not_allowed", "key_id": "far",
                             "group": "team", "endpoint": endpoint}


def test_an_unexpected_error_is_a_500_with_its_request_id_and_row(tmp_path: Path) -> None:
    """A bug in a handler (here: a prepare function that raises) is answered and recorded."""

    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    async def run() -> tuple[FakeProto, ListRecorder]:
        intake_gateway(tmp_path)  # writes the bundle
        recorder, app = ListRecorder(), App()
        settings = ServeSettings(policies=tmp_path / "policies", data_dir=tmp_path / "data", ledger=False,
                                 log_level="error")
        state = await app.start(settings, recorder=recorder)
        try:
            proto = FakeProto(CHAT)
            scope = FakeScope("POST", "/v1/chat/completions", _Headers({"authorization": f"Bearer {KEY}"}))
            with contextlib.suppress(Exception):
                await serve(relay_endpoint("chat/completions", broken), state, scope, proto)
            return proto, recorder
        finally:
            await app.stop()

    proto, recorder = asyncio.run(run())
    rid = proto.header("x-request-id")
    assert proto.status == 500 and rid is not None and proto.json()["error"]["code"] == "internal_error"
    assert [(r.request_id, r.status, r.error_type) for r in recorder.rows] == [(rid, 500, "internal_error")]
