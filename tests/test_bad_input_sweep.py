"""Bad input, systematically: one real gateway process in front of fake OpenAI, Anthropic, Gemini
and midjourney-proxy upstreams, and a table of malformed requests (tests/bad_input_cases.py) sent
to every POST endpoint. Each must be a 4xx in its endpoint's own error shape, with a message
that names the problem: never a 5xx, a traceback or a provider secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bad_input_cases import VALID, Case, all_cases, enc
from tests.conftest import key_hash
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.midjourney_proxy import FakeMidjourneyProxy
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

KEY, ADMIN = "tg-sweep-client", "tg-sweep-admin"
SECRETS = ("sk-sweep-oa-secret", "sk-sweep-ant-secret", "sk-sweep-gem-secret", "mj-sweep-secret")
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
max_body_bytes = 1048576

[[provider]]
id = "oa"
kind = "openai-compatible"
base_url = "{oa}"
api_keys = ["sk-sweep-oa-secret"]
models = ["gpt-x"]

[[provider]]
id = "an"
kind = "anthropic"
base_url = "{an}"
api_keys = ["sk-sweep-ant-secret"]
models = ["claude-x"]

[[provider]]
id = "ge"
kind = "gemini"
base_url = "{ge}"
api_keys = ["sk-sweep-gem-secret"]
models = ["gemini-x"]

[[provider]]
id = "mj"
kind = "midjourney"
base_url = "{mj}"
api_keys = ["mj-sweep-secret"]
models = ["midjourney"]

[[key]]
id = "sweep"
hash = "{key}"

[[admin_key]]
id = "root"
hash = "{admin}"
"""
TRACEBACK = re.compile(
    r"Traceback|File \"|msgspec\.|<class '|object at 0x|"
    r"\b(Key|Type|Attribute|Index|Value|Recursion|Unicode\w*|Name|Assertion|Runtime|Lookup)Error\b"
)
CASES = all_cases()


@dataclass
class Sweep:
    gw: GatewayProcess
    http: httpx.Client
    openai: FakeUpstream


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    oa = FakeUpstream("oa").start()
    an, ge = FakeAnthropic("sk-sweep-ant-secret"), FakeGemini("sk-sweep-gem-secret")
    an.start()
    ge.start()
    mj = FakeMidjourneyProxy("mj", secret="mj-sweep-secret").start()
    root = tmp_path_factory.mktemp("sweep")
    (root / "policies").mkdir()
    (root / "policies" / "bundle.toml").write_text(BUNDLE.format(
        oa=oa.base_url, an=an.base_url, ge=ge.base_url, mj=mj.base_url, key=key_hash(KEY), admin=key_hash(ADMIN)))
    try:
        with GatewayProcess(root / "policies", Path(root / "data")) as gw, httpx.Client(timeout=15) as http:
            yield Sweep(gw, http, oa)
    finally:
        for fake in (oa, an, ge, mj):
            fake.stop()


def auth_headers(family: str, auth: str) -> dict[str, str]:
    if auth == "none":
        return {}
    if auth == "admin":
        return {"authorization": f"Bearer {ADMIN}"}
    name = {"anthropic": "x-api-key", "gemini": "x-goog-api-key", "mj": "mj-api-secret"}.get(family)
    return {name: KEY} if name else {"authorization": f"Bearer {KEY}"}


def send(s: Sweep, case: Case) -> httpx.Response:
    headers = auth_headers(case.family, case.auth)
    if case.content_type is not None:
        headers["content-type"] = case.content_type
    return s.http.request(case.method, s.gw.url + case.path, content=case.body or None, headers=headers)


def message_of(family: str, status: int, doc: Any) -> str:
    """The error message, after checking `doc` is exactly the family's error shape."""
    assert isinstance(doc, dict), doc
    if family == "openai":
        assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "code", "param"}, doc
        assert isinstance(doc["error"]["type"], str) and doc["error"]["type"], doc
        return str(doc["error"]["message"])
    if family == "anthropic":
        assert set(doc) == {"type", "error"} and doc["type"] == "error", doc
        assert set(doc["error"]) == {"type", "message"} and doc["error"]["type"].endswith(("_error", "large")), doc
        return str(doc["error"]["message"])
    if family == "gemini":
        assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "status"}, doc
        assert doc["error"]["code"] == status and doc["error"]["status"].isupper(), doc
        return str(doc["error"]["message"])
    assert family == "mj"
    assert isinstance(doc.get("code"), int) and doc["code"] not in (1, 21, 22), doc
    return str(doc["description"])


def check_error(case: Case, r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.status_code in case.statuses, f"{r.status_code} not in {sorted(case.statuses)}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    message = message_of(case.family, r.status_code, r.json())
    assert message.strip(), r.text
    assert not TRACEBACK.search(r.text), r.text[:1000]
    for secret in (*SECRETS, KEY, ADMIN):
        assert secret not in r.text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(sweep: Sweep, case: Case) -> None:
    check_error(case, send(sweep, case))


CONTROLS = [
    ("/v1/chat/completions", "openai", "application/json; charset=utf-8"),
    ("/v1/chat/completions", "openai", None),
    ("/v1/messages", "anthropic", "application/json; charset=UTF-8"),
    ("/v1/messages", "anthropic", None),
    ("/v1beta/models/gemini-x:generateContent", "gemini", "application/json"),
    ("/v1beta/models/gemini-x:generateContent", "gemini", None),
    ("/mj/submit/imagine", "mj", "application/json;charset=UTF-8"),
    ("/admin/usage/query", "openai", "application/json"),
    # `curl -d` without -H sends form-urlencoded; text/plain from some libraries: read as JSON
    ("/v1/chat/completions", "openai", "application/x-www-form-urlencoded"),
    ("/v1/chat/completions", "openai", "text/plain"),
    ("/v1/messages", "anthropic", "application/x-www-form-urlencoded"),
    ("/v1beta/models/gemini-x:generateContent", "gemini", "text/plain;charset=UTF-8"),
]


@pytest.mark.parametrize(("path", "family", "ctype"), CONTROLS)
def test_well_formed_requests_still_pass(sweep: Sweep, path: str, family: str, ctype: str | None) -> None:
    """The sweep's refusals are not blanket ones: the same paths take a well-formed body."""
    case = Case("control", path, family, VALID[path], content_type=ctype,
                auth="admin" if path.startswith("/admin") else "client")
    r = send(sweep, case)
    assert r.status_code == 200, r.text[:500]


def test_curl_form_content_type_is_read_as_json_and_forwarded_as_json(sweep: Sweep) -> None:
    """`curl -d '{...}'` without -H sends application/x-www-form-urlencoded."""
    sweep.openai.received.clear()
    case = Case("curl", "/v1/chat/completions", "openai", VALID["/v1/chat/completions"],
                content_type="application/x-www-form-urlencoded")
    assert send(sweep, case).status_code == 200
    (got,) = sweep.openai.received
    assert got.headers["Content-Type"] == "application/json"
    assert got.json()["messages"]


def test_multipart_with_a_file_still_passes(sweep: Sweep) -> None:
    files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
    r = sweep.http.post(sweep.gw.url + "/v1/audio/transcriptions", data={"model": "gpt-x"}, files=files,
                        headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text[:500]


def test_case_table_is_large_and_named_uniquely() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) > 500
    assert enc({}) == b"{}"
