"""Shared by the Midjourney tests: the bundle, the client keys, and an in-process RSGI harness
(fake scope and protocol objects) to run the real App with a recording usage ledger stub."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.usage.record import UsageRecord
from tests.conftest import key_hash
from tests.fakes.midjourney_proxy import FakeMidjourneyProxy

MJ_KEYS = {"alice": "tg-mj-alice", "bob": "tg-mj-bob", "nomj": "tg-mj-none"}
MJ_ADMIN = "tg-mj-admin"
PRICES = {"mj_imagine": "0.05", "mj_upscale": "0.02", "mj_variation": "0.03", "mj_reroll": "0.04",
          "mj_describe": "0.01", "mj_blend": "0.06", "mj_zoom": "0.07", "mj_pan": "0.08",
          "mj_modal": "0.09", "mj_shorten": "0.005"}
ALICE_MULTIPLIER = 3  # her key 1.5 x her group 2.0

MJ_BUNDLE = """
schema = 1

[settings]
pricing = "strict"

[[provider]]
id = "mj-a"
kind = "midjourney"
base_url = "{a}"
api_keys = ["mj-secret-a"]
models = ["midjourney"]
timeouts = {{ connect = 2, read = 5, total = 10 }}

[[provider]]
id = "mj-b"
kind = "midjourney"
base_url = "{b}"
api_keys = ["mj-secret-b"]
models = ["midjourney"]
timeouts = {{ connect = 2, read = 5, total = 10 }}

[price.midjourney]
per_action = {{ {prices} }}

[group.pro]
price_multiplier = 2.0

[[key]]
id = "alice"
hash = "{alice}"
group = "pro"
price_multiplier = 1.5
tags = ["team-art"]

[[key]]
id = "bob"
hash = "{bob}"

[[key]]
id = "nomj"
hash = "{nomj}"
models = ["gpt-*"]

[[admin_key]]
id = "root"
hash = "{admin}"
"""


def write_mj_bundle(directory: Path, a: FakeMidjourneyProxy, b: FakeMidjourneyProxy) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    prices = ", ".join(f"{k} = {v}" for k, v in PRICES.items())
    text = MJ_BUNDLE.format(a=a.base_url, b=b.base_url, prices=prices, admin=key_hash(MJ_ADMIN),
                            **{k: key_hash(v) for k, v in MJ_KEYS.items()})
    (directory / "bundle.toml").write_text(text)
    return directory


def start_proxies() -> tuple[FakeMidjourneyProxy, FakeMidjourneyProxy]:
    return (FakeMidjourneyProxy("a", secret="mj-secret-a").start(),
            FakeMidjourneyProxy("b", secret="mj-secret-b").start())


# --- in-process RSGI harness ------------------------------------------------------------------
class ListRecorder:
    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    def record(self, row: UsageRecord) -> None:
        self.rows.append(row)

    def by_request(self, request_id: str) -> list[UsageRecord]:
        return [r for r in self.rows if r.request_id == request_id]


class _Headers(dict[str, str]):
    pass


@dataclass
class FakeScope:
    method: str
    path: str
    headers: _Headers
    client: str = "127.0.0.1:50000"
    query_string: str = ""


@dataclass
class FakeProto:
    body: bytes = b""
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    sent: bytes = b""

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.sent = status, headers, body

    def json(self) -> Any:
        return json.loads(self.sent)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


async def call(app: Any, method: str, path: str, key: str | None, doc: Any = None) -> FakeProto:
    headers = _Headers({"content-type": "application/json"})
    if key:
        headers["authorization"] = f"Bearer {key}"
    body = json.dumps(doc).encode() if doc is not None else b""
    proto = FakeProto(body)
    await app.__rsgi__(FakeScope(method, path, headers), proto)
    return proto
