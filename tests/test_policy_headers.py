"""Upstream headers from a bundle: names are lower-cased at load, so where a provider's `headers`
and the rules' `set_headers` are merged (`send_http`) each name is sent once, the later table's
value winning, and the gateway's own headers (credentials, framing) stay the gateway's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config import BundleError, Snapshot, load_snapshot
from gateway.config.headers import CREDENTIAL_HEADERS, GATEWAY_HEADERS
from gateway.config.types import Timeouts
from gateway.policy.context import Facts, KeyView, RequestView
from gateway.providers.adapters.base import UpstreamCall
from gateway.providers.adapters.openai import OpenAIAdapter

CASES = Path(__file__).resolve().parent / "bundle_cases"


class _Recorder:
    """An UpstreamClient that records the headers of the one request it is sent."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeouts: Timeouts
    ) -> Any:
        self.headers = dict(headers)
        return None

    async def aclose(self) -> None:
        pass


def sent_headers(snap: Snapshot, key_id: str, *, stream: bool = False) -> dict[str, str]:
    facts = Facts(RequestView(model="llama-3.1-8b", endpoint="/v1/chat/completions"), KeyView(key_id))
    decision = snap.rules.evaluate(facts.lookup)
    call = UpstreamCall(
        provider=snap.providers["vllm"], endpoint="chat/completions", method="POST", model="llama-3.1-8b",
        body=b"{}", content_type="application/json", stream=stream, api_key="sk-up", headers=decision.headers,
    )  # fmt: skip
    client = _Recorder()
    asyncio.run(OpenAIAdapter().send(call, client))  # type: ignore[arg-type]
    return client.headers


def test_rule_header_replaces_the_providers_once() -> None:
    snap = load_snapshot(CASES / "valid" / "header_case", env={})
    headers = sent_headers(snap, "team-a")
    assert headers == {
        "content-type": "application/json",
        "accept-encoding": "identity",
        "x-team": "rule-2",  # provider "X-Team", rule "X-Team", then rule "x-team": the last wins
        "openai-organization": "org-1",
        "authorization": "Bearer sk-up",
        "x-priority": "high",
    }
    assert [name.lower() for name in headers] == list(headers)  # one spelling each


def test_provider_headers_apply_without_a_rule() -> None:
    snap = load_snapshot(CASES / "valid" / "header_case", env={})
    headers = sent_headers(snap, "someone-else", stream=True)
    assert headers["x-team"] == "provider"
    assert headers["accept"] == "text/event-stream"


def test_adapters_credential_headers_are_owned() -> None:
    # Every header an adapter sets from the provider's key must be refused in a bundle.
    assert {"authorization", "api-key", "x-api-key", "x-goog-api-key", "mj-api-secret"} <= CREDENTIAL_HEADERS
    assert {"content-type", "accept-encoding"} <= GATEWAY_HEADERS


@pytest.mark.parametrize("name", sorted(CREDENTIAL_HEADERS | GATEWAY_HEADERS))
@pytest.mark.parametrize("where", ["provider", "rule"])
def test_every_owned_header_is_refused_in_any_spelling(tmp_path: Path, name: str, where: str) -> None:
    spelled = "-".join(part.capitalize() for part in name.split("-"))
    table = f'{{ "{spelled}" = "x" }}'
    text = 'schema = 1\n[settings]\npricing = "lenient"\n[[provider]]\nid = "m"\nkind = "mock"\nmodels = ["a"]\n'
    if where == "provider":
        text += f"headers = {table}\n"
    else:
        text += f'[[rule]]\nid = "r"\nwhen = "true"\nset_headers = {table}\n'
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(BundleError) as caught:
        load_snapshot(tmp_path, env={})
    [problem] = caught.value.problems
    assert problem.line == (8 if where == "provider" else 11)
    assert problem.path.endswith(f"headers.{spelled}")
    assert "cannot be set here" in problem.message


def test_a_header_value_is_not_echoed_in_a_duplicate_error(tmp_path: Path) -> None:
    text = ('schema = 1\n[settings]\npricing = "lenient"\n[[provider]]\nid = "m"\nkind = "mock"\n'
            'models = ["a"]\nheaders = { "X-Secret" = "s3cr3t-1", "x-secret" = "s3cr3t-2" }\n')
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(BundleError) as caught:
        load_snapshot(tmp_path, env={})
    assert "s3cr3t" not in str(caught.value)
