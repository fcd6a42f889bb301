"""Shared by the limit tests: a bundle with one key per scenario, clients, bursts, polling."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import openai
from aiohttp import web

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.threaded import ThreadedApp
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


# --- Budget reservations (tests/test_limits_reserve.py) -----------------------------------------
#
# `priced` costs 100 USD per million tokens, in and out (0.0001 USD a token). A request with
# `reserve_body()` (100 bytes: ~25 prompt tokens) and max_tokens = 15 reserves 40 tokens:
# 0.004 USD. The held upstream answers 12 prompt + 5 completion tokens: a real cost of 0.0017 USD.
RESERVE_USD = 0.004
REAL_USD = 0.0017

RESERVE_BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
timezone = "UTC"

[[provider]]
id = "held"
kind = "openai-compatible"
base_url = "{base}"
api_keys = ["sk-held"]
models = ["priced"]
timeouts = {{ connect = 2, read = 60, total = 60 }}

[price.priced]
input = 100.0
output = 100.0
{keys}
"""

RESERVE_KEYS = ("burst", "settle", "cancel")


def reserve_secret(name: str) -> str:
    return f"tg-reserve-{name}"


def write_reserve_bundle(directory: Path, upstream: HeldUpstream) -> Path:
    """One key per scenario, each with a budget of 0.01 USD for the month."""
    keys = "".join(f'\n[[key]]\nid = "{n}"\nhash = "{key_hash(reserve_secret(n))}"\n'
                   'budget = { usd = 0.01, period = "month" }\n' for n in RESERVE_KEYS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bundle.toml").write_text(RESERVE_BUNDLE.format(base=upstream.base_url, keys=keys))
    return directory


def reserve_body(max_tokens: int = 15) -> bytes:
    """A chat request of exactly 100 bytes (the gateway estimates 25 prompt tokens)."""
    head = b'{"model":"priced","max_tokens":%d,"messages":[{"role":"user","content":"' % max_tokens
    tail = b'"}]}'
    return head + b"x" * (100 - len(head) - len(tail)) + tail


class HeldUpstream:
    """An OpenAI-compatible upstream that holds every answer until `release()` (and answers at
    once after it, until `hold()`); it counts the requests that reached it and those whose
    client went away while held."""

    def __init__(self) -> None:
        self.arrived = 0
        self.disconnects = 0
        self._open = False
        self._gate: asyncio.Event | None = None
        self._app = ThreadedApp(self._handle, cancel_on_disconnect=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> HeldUpstream:
        self.port = self._app.start()
        return self

    def stop(self) -> None:
        self.release()
        self._app.stop()

    def _set(self, is_open: bool) -> None:
        def apply() -> None:
            self._open = is_open
            if self._gate is not None:
                if is_open:
                    self._gate.set()
                else:
                    self._gate = None
        loop = self._app._loop
        assert loop is not None
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (apply(), done.set()))
        assert done.wait(5)

    def hold(self) -> None:
        self._set(False)

    def release(self) -> None:
        self._set(True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        doc = json.loads(await request.read())
        self.arrived += 1
        if not self._open:
            if self._gate is None:
                self._gate = asyncio.Event()
            try:
                await self._gate.wait()
            except asyncio.CancelledError:
                self.disconnects += 1
                raise
        return web.json_response({
            "id": "chatcmpl-held", "object": "chat.completion", "created": 1, "model": doc["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "held answer"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}})


def post_reserve(url: str, name: str, max_tokens: int = 15) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", content=reserve_body(max_tokens), timeout=60,
                      headers={"authorization": f"Bearer {reserve_secret(name)}",
                               "content-type": "application/json"})


def fire(urls: list[str], name: str, n: int) -> list[Future[httpx.Response]]:
    """`n` requests at once (each on its own thread and connection), spread over `urls`."""
    pool = ThreadPoolExecutor(max_workers=n)
    futures = [pool.submit(post_reserve, urls[i % len(urls)], name) for i in range(n)]
    pool.shutdown(wait=False)
    return futures


def open_raw_request(url: str, name: str) -> socket.socket:
    """Send a reserve request on a raw connection and leave it open (close it to cancel)."""
    host, port = url.removeprefix("http://").split(":")
    body = reserve_body()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\nauthorization: Bearer %s\r\n"
                 b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                 % (host.encode(), reserve_secret(name).encode(), len(body), body))
    return sock
