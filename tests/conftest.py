"""Shared fixtures: fake upstreams on loopback and a real gateway process in front of them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess


def key_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


RELAY_BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
max_body_bytes = 1048576
[settings.routing]
max_attempts = 3
retry_on = [429, 500, 502, 503, 504]
[settings.routing.breaker]
failures = 2
window_s = 30
cooldown_s = 1

[[provider]]
id = "up-a"
kind = "openai-compatible"
base_url = "{a}"
api_keys = ["sk-a1", "sk-a2"]
models = ["m-a", "shared", "broken", "hang", "slow-stream", "tool", "bad-request", "cut"]
timeouts = {{ connect = 2, read = 5, total = 30 }}

[[provider]]
id = "up-b"
kind = "openai-compatible"
base_url = "{b}"
api_keys = ["sk-b"]
models = ["m-b", "shared"]
priority = 1

[[provider]]
id = "az"
kind = "azure"
base_url = "{b_root}"
api_keys = ["az-key"]
models = ["gpt-az"]
deployments = {{ "gpt-az" = "dep-1" }}
api_version = "2024-10-21"

[model.tiered]
targets = [{{ provider = "up-a", model = "shared" }}, {{ provider = "up-b", model = "shared" }}]

[model.fb]
targets = [{{ provider = "up-a", model = "broken" }}]
fallbacks = ["m-b"]

[model.renamed]
targets = [{{ provider = "up-b", model = "m-b" }}]

[price.m-a]
input = 1.0
output = 2.0

[[key]]
id = "client"
hash = "{client}"
tags = ["team-a"]

[[key]]
id = "limited"
hash = "{limited}"
models = ["m-a"]

[[key]]
id = "expired"
hash = "{expired}"
expires = 2020-01-01T00:00:00Z

[[key]]
id = "far-away"
hash = "{faraway}"
ip_allow = ["10.0.0.0/8"]

[[key]]
id = "off"
hash = "{off}"
disabled = true

[[admin_key]]
id = "root"
hash = "{admin}"

[[rule]]
id = "no-forbidden"
when = 'request.model == "forbidden"'
deny = "the forbidden model is off limits"

[[rule]]
id = "team-header"
when = 'key.id == "client"'
set_headers = {{ "x-team" = "alpha" }}

[[rule]]
id = "long-chats-to-b"
when = 'request.message_count > 5'
route = "renamed"
"""

KEYS = {"client": "tg-client", "limited": "tg-limited", "expired": "tg-expired",
        "faraway": "tg-far", "off": "tg-off", "admin": "tg-admin"}


def write_relay_bundle(directory: Path, a: FakeUpstream, b: FakeUpstream) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = RELAY_BUNDLE.format(a=a.base_url, b=b.base_url, b_root=b.base_url.removesuffix("/v1"),
                               **{k: key_hash(v) for k, v in KEYS.items()})
    (directory / "bundle.toml").write_text(text)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    a, b = FakeUpstream("a").start(), FakeUpstream("b").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def relay_gateway(upstreams: tuple[FakeUpstream, FakeUpstream],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("relay")
    write_relay_bundle(root / "policies", *upstreams)
    with GatewayProcess(root / "policies", root / "data") as gw:
        yield gw


@pytest.fixture()
def fresh(upstreams: tuple[FakeUpstream, FakeUpstream]) -> tuple[FakeUpstream, FakeUpstream]:
    for u in upstreams:
        u.reset()
    return upstreams
