"""Micro-benchmarks of the per-request path, in µs per request, so a regression points at its
cause: request decode, auth lookup, policy evaluation, routing, pricing, usage record, and the
whole in-process request (RSGI app with a canned upstream, no sockets).

Run: .venv/bin/python -m benchmarks.bench_hotpath [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path

from benchmarks.bench_policy import bundle_text
from gateway.billing.pricing import compute_cost
from gateway.billing.setup import make_limiter
from gateway.config import load_snapshot
from gateway.config.reload import PolicyStore
from gateway.config.types import Timeouts
from gateway.core.usage import TokenUsage
from gateway.policy.context import Facts, KeyView, RequestView
from gateway.providers.wire.head import decode_head
from gateway.routing.select import RoundRobin, candidates
from gateway.server.app import App
from gateway.server.state import WorkerState
from gateway.settings import ServeSettings
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter

BODY = b'{"model":"m-small","messages":[{"role":"user","content":"hello there"}],"max_tokens":256}'
ANSWER = (b'{"id":"x","object":"chat.completion","created":1,"model":"m-small","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')


def per_call(fn: Callable[[], object], n: int = 20000) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(n // 5):
            fn()
        runs.append((time.perf_counter_ns() - t) / (n // 5) / 1000)
    return statistics.median(runs)


class _Headers(dict[str, str]):
    pass


class _Scope:
    proto = "http"
    method = "POST"
    path = "/v1/chat/completions"
    query_string = ""
    client = "127.0.0.1:5555"

    def __init__(self, key: str) -> None:
        self.headers = _Headers({"authorization": f"Bearer {key}", "content-type": "application/json"})


class _Proto:
    def __init__(self) -> None:
        self.status = 0

    async def __call__(self) -> bytes:
        return BODY

    def client_disconnect(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status


class _Response:
    status = 200
    headers: Mapping[str, str] = {"content-type": "application/json"}

    async def read(self) -> bytes:
        return ANSWER

    async def chunks(self) -> AsyncIterator[bytes]:
        yield ANSWER

    async def aclose(self) -> None:
        return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Spool:
    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer

    def record(self, row: UsageRecord) -> None:
        self.writer.append(row)


class _CannedClient:
    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   timeouts: Timeouts) -> _Response:
        return _Response()

    async def aclose(self) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = bundle_text(1000).replace('kind = "mock"', 'kind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"')
        (Path(tmp) / "bundle.toml").write_text(text)
        snap = load_snapshot(tmp)
        store = PolicyStore(Path(tmp), snap)
    secret = "key-1"
    key = snap.key_for(secret)
    assert key is not None and key.group is not None
    head = decode_head(BODY)
    facts = Facts(RequestView(model="m-small", endpoint="chat/completions", max_tokens=256),
                  KeyView(key.id, key.group.id, list(key.tags)))
    rng, rr = random.Random(1), RoundRobin()
    route = snap.routes["m-small"]
    price = snap.price_for("mock", "m-small")
    usage = TokenUsage(prompt_tokens=1200, completion_tokens=300, cached_tokens=200)
    sample_row = UsageRecord(request_id="req_x", started_at=_now(), finished_at=_now(), key_id="k1",
                             cost_usd=Decimal("0.000375"), tags=["a"])
    rows = {
        "request decode (msgspec head)": per_call(lambda: decode_head(BODY)),
        "auth lookup (sha256 + dict)": per_call(lambda: snap.key_for(secret)),
        "policy (20 rules, warm)": per_call(lambda: snap.rules.evaluate(facts.lookup)),
        "routing (candidate pick)": per_call(lambda: next(candidates(snap, route, rng, rr))),
        "pricing (Decimal)": per_call(lambda: compute_cost(price, usage, 1.0)),
    }
    _ = head
    spool_dir = Path(tempfile.mkdtemp())
    recorder = SpoolWriter(spool_dir, rotate_s=3600)
    settings = ServeSettings(ledger=False)
    limiter = asyncio.new_event_loop().run_until_complete(make_limiter(settings))
    rows["usage record (spool append)"] = per_call(lambda: recorder.append(sample_row), 5000)
    state = WorkerState(settings, store, _CannedClient(), _Spool(recorder), limiter)  # type: ignore[arg-type]
    app = App()
    app.state = state

    async def one() -> None:
        proto = _Proto()
        await app.__rsgi__(_Scope(secret), proto)
        assert proto.status == 200, proto.status

    async def many(n: int) -> float:
        t = time.perf_counter_ns()
        for _ in range(n):
            await one()
        return (time.perf_counter_ns() - t) / n / 1000

    loop = asyncio.new_event_loop()
    loop.run_until_complete(many(2000))
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        loop.run_until_complete(many(5000))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    rows["whole request in-process (no sockets; limits + spool on)"] = statistics.median(
        loop.run_until_complete(many(3000)) for _ in range(5))
    for name, us in rows.items():
        print(f"{name:52s} {us:8.2f} µs")


if __name__ == "__main__":
    main()
