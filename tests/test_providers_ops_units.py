"""The parts of provider operations below the gateway process: model discovery in each family's
dialect and paging (a fake listing server on loopback), drift and its TOML snippet (which must
pass `tollgate check` once pasted), provider tests through the real adapters, key masking, the
merge of worker health documents, and the key ring's bench / restore events."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Snapshot, load_snapshot
from gateway.ops.discover import DiscoveryError, upstream_models
from gateway.ops.drift import drift, listed_models, snippet
from gateway.ops.health import HealthStats, worker_document
from gateway.ops.health_merge import merged_health, publish, read_documents
from gateway.ops.probe import probe_provider
from gateway.providers.keyring import Bench, KeyRing
from gateway.providers.transport.h1client import H1Client
from gateway.redact import mask_key
from gateway.routing.breaker import Breakers
from tests.fakes.model_lists import ModelLists

KEY = "sk-list-secret-0a1b2c3d"
MODELS = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture(scope="module")
def lists() -> Iterator[ModelLists]:
    server = ModelLists(KEY, MODELS).start()
    yield server
    server.stop()


def snap_of(tmp_path: Path, text: str) -> Snapshot:
    d = tmp_path / "p"
    d.mkdir(exist_ok=True)
    (d / "b.toml").write_text("schema = 1\n[settings]\npricing = \"lenient\"\n" + text)
    return load_snapshot(d, env={"LIST_KEY": KEY})


def providers(base: str) -> str:
    return f"""
[[provider]]
id = "oa"
kind = "openai-compatible"
base_url = "{base}/v1"
api_keys = ["${{LIST_KEY}}"]
models = ["alpha", "zeta"]

[[provider]]
id = "an"
kind = "anthropic"
base_url = "{base}"
api_keys = ["${{LIST_KEY}}"]

[[provider]]
id = "ge"
kind = "gemini"
base_url = "{base}"
api_keys = ["${{LIST_KEY}}"]

[[provider]]
id = "az"
kind = "azure"
base_url = "{base}"
api_keys = ["${{LIST_KEY}}"]
deployments = {{ "beta" = "dep-beta" }}

[[provider]]
id = "bad"
kind = "openai-compatible"
base_url = "{base}/v1"
api_keys = ["sk-wrong-secret-99887766"]

[price.alpha]
input = 1.0
output = 1.0
"""


def discover(snap: Snapshot, pid: str) -> list[str]:
    async def run() -> list[str]:
        client = H1Client(4)
        try:
            return await upstream_models(snap.providers[pid], client, snap.redactor)
        finally:
            await client.aclose()
    return asyncio.run(run())


def test_discovery_in_every_dialect_with_paging(tmp_path: Path, lists: ModelLists) -> None:
    snap = snap_of(tmp_path, providers(lists.base_url))
    for pid in ("oa", "an", "ge"):
        assert discover(snap, pid) == sorted(MODELS), pid
    assert discover(snap, "az") == sorted(["beta", *(f"dep-{m}" for m in MODELS if m != "beta")])
    assert sum("after_id=" in p for p in lists.paths) == 2  # 5 models, 2 a page: 3 pages
    assert sum("pageToken=" in p for p in lists.paths) == 2


def test_discovery_refused_names_the_status_never_the_key(tmp_path: Path, lists: ModelLists) -> None:
    snap = snap_of(tmp_path, providers(lists.base_url))
    with pytest.raises(DiscoveryError) as caught:
        discover(snap, "bad")
    assert "HTTP 401" in str(caught.value) and "sk-wrong-secret-99887766" not in str(caught.value)


def test_drift_and_a_snippet_that_checks(tmp_path: Path, lists: ModelLists) -> None:
    snap = snap_of(tmp_path, providers(lists.base_url))
    d = drift(snap, snap.providers["oa"], discover(snap, "oa"), ignore=["eps*"])
    assert (d.not_offered, d.not_listed, d.unpriced) == (["zeta"], ["beta", "delta", "gamma"], [])
    assert d.drifted
    text = snippet(d, listed_models(snap.providers["oa"]))
    assert 'models = ["alpha", "beta", "delta", "gamma"]' in text
    pasted = tmp_path / "pasted"
    pasted.mkdir()
    body = text.split("\n", 2)[2]  # the price tables, after the models line
    (pasted / "b.toml").write_text(f'schema = 1\n[[provider]]\nid = "oa"\nkind = "mock"\n{text.splitlines()[1]}\n'
                                   f"[price.alpha]\ninput = 1.0\n{body}")
    assert set(load_snapshot(pasted, env={}).prices) == {"alpha", "beta", "delta", "gamma"}


def test_probe_through_the_adapters(tmp_path: Path) -> None:
    snap = snap_of(tmp_path, '[[provider]]\nid = "m"\nkind = "mock"\nmodels = ["chat-1", "text-embedding-x"]\n')

    async def run() -> list[dict[str, object]]:
        client = H1Client(2)
        try:
            results = await probe_provider(snap.providers["m"], client, snap.redactor, stream=True)
        finally:
            await client.aclose()
        return [r.as_dict() for r in results]

    results = {r["kind"]: r for r in asyncio.run(run())}
    assert results["chat"]["ok"] and results["chat"]["stream"] and results["chat"]["completion_tokens"]
    assert results["embeddings"]["ok"] and not results["embeddings"]["stream"]
    assert results["embeddings"]["prompt_tokens"]


def test_mask_key() -> None:
    assert mask_key("sk-proj-abcdefghijklmnop-a1b2") == "sk-...a1b2"
    assert mask_key("AIzaSyA-0123456789abcdef") == "AI...cdef"
    assert mask_key("short") == "..."
    assert mask_key("") == "(none)"
    for key in ("sk-proj-abcdefghijklmnop-a1b2", "0123456789ab", "abcdefghi"):
        assert len(mask_key(key).replace("...", "")) <= len(key) // 2


def test_keyring_events_and_health_merge(tmp_path: Path) -> None:
    snap = snap_of(tmp_path, '[[provider]]\nid = "p"\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:1"\n'
                   'api_keys = ["sk-one-1234567890", "sk-two-0987654321"]\nmodels = ["m"]\n')
    events: list[tuple[str, int, Bench]] = []
    ring = KeyRing(snap.providers["p"].api_keys, lambda name, i, b: events.append((name, i, b)))
    ring.bench("sk-two-0987654321", reason="HTTP 401: bad key", status=401, until_test=True)
    ring.bench("sk-two-0987654321", reason="again", status=401, until_test=True)  # already benched: no event
    assert [(n, i) for n, i, _ in events] == [("key_benched", 1)] and math.isinf(events[0][2].until)
    assert list(ring.rotation()) == ["sk-one-1234567890"]
    assert ring.expire() == []  # until a test passes, never by time

    stats = HealthStats()
    for ok, index in ((True, 0), (False, 0), (True, 1)):
        HealthStats.end(stats.begin("p", index), ok, time.monotonic())
    busy = stats.begin("p", 0)  # in flight
    breakers = Breakers()
    doc_a = worker_document(snap.providers, breakers.all(), {"p": ring}, stats)
    doc_b = {**doc_a, "pid": -1}  # a second worker that saw the same
    publish(tmp_path / "data", doc_b)
    merged = merged_health(snap, read_documents(tmp_path / "data", doc_a))
    [p] = merged["providers"]
    assert merged["workers"] == 2 and p["breaker"]["state"] == "closed"
    k0, k1 = p["keys"]
    assert (k0["requests"], k0["errors"], k0["in_flight"], k0["error_rate"]) == (4, 2, 2, 0.5)
    assert k1["benched"]["until_test"] and k1["benched"]["until"] is None and k1["key"] == "sk-...4321"
    assert "sk-two-0987654321" not in str(merged)
    HealthStats.end(busy, True, time.monotonic())

    assert ring.restore(1, "provider test passed")
    assert [n for n, _, _ in events] == ["key_benched", "key_restored"]
    assert sorted(ring.rotation()) == ["sk-one-1234567890", "sk-two-0987654321"]


def test_timed_bench_expires_with_an_event() -> None:
    events: list[str] = []
    ring = KeyRing(("sk-aaaa-1111", "sk-bbbb-2222"), lambda name, i, b: events.append(f"{name}:{i}:{b.reason}"))
    ring.bench("sk-aaaa-1111", seconds=0.0, reason="HTTP 401", status=401)
    assert ring.expire() == [0]
    assert events == ["key_benched:0:HTTP 401", "key_restored:0:bench time over"]
