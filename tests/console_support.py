"""Shared by the console tests: a bundle with keys of every kind, a gateway running it, traffic
for the ledger, and signing in to the console over plain HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

REVOKED = "sk-revoked-secret-9z9z"  # the fake upstream answers 401 to it: benched
KEYS = {"alice": "tg-console-alice", "bob": "tg-console-bob", "off": "tg-console-off",
        "admin": "tg-console-admin"}

BUNDLE = """
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["mock-small", "mock-large"]

[[provider]]
id = "upstream"
kind = "openai-compatible"
base_url = "{upstream}"
api_keys = ["sk-good-0001", "{revoked}"]
models = ["up-model"]

[price.up-model]
input = 1.0
output = 1.0

[model.demo]
targets = [{{ provider = "mock", model = "mock-small" }}]

[price.mock-small]
input = 1.0
output = 2.0

[price.mock-large]
input = 10.0
output = 20.0

[group.team]
limits = {{ rpm = 6 }}  # alice's five requests make it "near exhaustion"

[[key]]
id = "alice"
hash = "{alice}"
group = "team"
models = ["demo", "mock-*"]
budget = {{ usd = 5, period = "month" }}
limits = {{ rpm = 600, tpm = 100000, concurrency = 4 }}

[[key]]
id = "bob"
hash = "{bob}"

[[key]]
id = "switched-off"
hash = "{off}"
disabled = true

[[admin_key]]
id = "ops"
hash = "{admin}"
"""


def write_bundle(directory: Path, upstream: FakeUpstream) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    upstream.reject_keys.add(REVOKED)
    hashes = {k: key_hash(v) for k, v in KEYS.items()}
    (directory / "bundle.toml").write_text(BUNDLE.format(upstream=upstream.base_url, revoked=REVOKED, **hashes))


def chat(gw: GatewayProcess, key: str, model: str, n: int = 1) -> list[str]:
    """`n` chat completions; their request ids."""
    ids = []
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for _ in range(n):
            r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEYS[key]}"},
                            json={"model": model, "messages": [{"role": "user", "content": "hello"}]})
            ids.append(r.headers["x-request-id"])
    return ids


def traffic(gw: GatewayProcess) -> dict[str, list[str]]:
    """Requests by alice (two models, one refused) and bob, waited for in the ledger."""
    ids = {"alice": chat(gw, "alice", "demo", 3) + chat(gw, "alice", "mock-large", 2),
           "bob": chat(gw, "bob", "mock-small", 2) + chat(gw, "bob", "nope", 1) + chat(gw, "bob", "up-model", 2)}
    total = sum(len(v) for v in ids.values())
    gw.usage_rows("SELECT request_id FROM usage", until=lambda rows: len(rows) >= total)
    return ids


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def sign_in(gw: GatewayProcess, key: str, **headers: Any) -> tuple[httpx.Client, httpx.Response]:
    """A client that signed in with the key named `key` (or this literal secret); the answer."""
    client = httpx.Client(base_url=gw.url, timeout=30)
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"key": KEYS.get(key, key), "csrf": csrf_of(form.text)},
                         headers=headers)
    return client, answer
