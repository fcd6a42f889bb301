"""Shared by the limit tests: a bundle with one key per scenario, clients, bursts, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import openai

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

T = TypeVar("T")

# A non-streamed answer from the fake upstream uses 12 prompt (4 cached) + 5 completion tokens:
# at these prices it costs (8 * 1 + 4 * 1 + 5 * 2) / 1e6 = 0.000022 USD.
COST = 0.000022
TOKENS = 17

LIMITS_BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
timezone = "Europe/Paris"

[[provider]]
id = "up"
kind = "openai-compatible"
base_url = "{base}"
api_keys = ["sk-up"]
models = ["m-a", "m-b", "slow-stream", "bad-request"]
timeouts = {{ connect = 2, read = 10, total = 30 }}

[price.m-a]
input = 1.0
output = 2.0

[group.pair]
limits = {{ rpm = 4 }}

[[key]]
id = "free"
hash = "{free}"

[[key]]
id = "burst"
hash = "{burst}"
limits = {{ rpm = 5 }}

[[key]]
id = "shared"
hash = "{shared}"
limits = {{ rpm = 8 }}

[[key]]
id = "tokens"
hash = "{tokens}"
limits = {{ tpm = 300 }}

[[key]]
id = "conc"
hash = "{conc}"
limits = {{ concurrency = 2 }}

[[key]]
id = "budget"
hash = "{budget}"
budget = {{ usd = 0.00005, period = "month" }}

[[key]]
id = "model-capped"
hash = "{model_capped}"
model_limits = {{ "m-b" = {{ rpm = 1 }} }}

[[key]]
id = "pair-1"
hash = "{pair_1}"
group = "pair"

[[key]]
id = "pair-2"
hash = "{pair_2}"
group = "pair"

[[key]]
id = "ruled"
hash = "{ruled}"
budget = {{ usd = 0.0001, period = "day" }}
"""

RULES = """
[[rule]]
id = "busy"
when = 'key.id == "ruled" && usage.rpm >= 3'
deny = "slow down: 3 requests in the last minute"

[[rule]]
id = "half-budget"
when = 'key.id == "ruled" && usage.budget_fraction >= 0.4'
set_model = "m-b"
"""

NAMES = ("free", "burst", "shared", "tokens", "conc", "budget", "model_capped", "pair_1", "pair_2", "ruled")
SECRETS = {name: f"tg-limits-{name}" for name in NAMES}


def write_limits_bundle(directory: Path, upstream: FakeUpstream, rules: bool = True) -> Path:
    """With `rules`, two rules read `usage` (then every request reads usage state)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = LIMITS_BUNDLE.format(base=upstream.base_url, **{n: key_hash(s) for n, s in SECRETS.items()})
    text += RULES if rules else ""
    (directory / "bundle.toml").write_text(text)
    return directory


def client(gw: GatewayProcess, name: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=SECRETS[name], max_retries=retries)


def chat(gw: GatewayProcess, name: str, model: str = "m-a", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {SECRETS[name]}"}, timeout=30)


def burst(gateways: list[GatewayProcess], name: str, n: int, model: str = "m-a") -> list[httpx.Response]:
    """`n` requests at once, spread over `gateways` in turn."""

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            headers = {"authorization": f"Bearer {SECRETS[name]}"}
            calls = [http.post(f"{gateways[i % len(gateways)].url}/v1/chat/completions", json=body,
                               headers=headers) for i in range(n)]
            return list(await asyncio.gather(*calls))

    return asyncio.run(go())


class Held:
    """A streamed completion, read up to its first chunk and left open (the line iterator is
    kept: dropping it would close the connection)."""

    def __init__(self, gw: GatewayProcess, name: str) -> None:
        self.http = httpx.Client(timeout=30)
        body = {"model": "slow-stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        request = self.http.build_request("POST", f"{gw.url}/v1/chat/completions", json=body,
                                          headers={"authorization": f"Bearer {SECRETS[name]}"})
        self.response = self.http.send(request, stream=True)
        self.lines = self.response.iter_lines()
        if self.response.status_code == 200:
            assert next(self.lines).startswith("data: ")

    def close(self) -> None:
        self.response.close()
        self.http.close()


def poll(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """`check()` until it returns something truthy, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        time.sleep(interval)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])
