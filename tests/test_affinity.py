"""Affinity routing (gateway/routing/affinity.py): an alias's `affinity` CEL pins the requests
with the same value to the same target and the same API key, through a real gateway in front
of two fake OpenAI-compatible upstreams; a target whose breaker opens gives its values to the
next target; a refused key gives them to the next key; the ledger keeps a hash of the value and
the `cache_hits_by_affinity` view the cache-hit rate per value."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

KEY = "tg-affinity"
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
[settings.routing]
retry_on = [500]
[settings.routing.breaker]
failures = 1
cooldown_s = 600

[[provider]]
id = "pa"
kind = "openai-compatible"
base_url = "{a}"
api_keys = ["sk-a1", "sk-a2", "sk-a3"]
models = ["chat-model"]

[[provider]]
id = "pb"
kind = "openai-compatible"
base_url = "{b}"
api_keys = ["sk-b1", "sk-b2", "sk-b3"]
models = ["chat-model"]

[model.sticky]
targets = [{{ provider = "pa", model = "chat-model" }}, {{ provider = "pb", model = "chat-model" }}]
affinity = 'request.metadata.user'

[model.by-session]
targets = [{{ provider = "pa", model = "chat-model" }}, {{ provider = "pb", model = "chat-model" }}]
affinity = 'request.headers["x-session"]'

[[key]]
id = "affinity"
hash = "{h}"
"""
HI: Any = [{"role": "user", "content": "hi"}]
USERS = [f"user-{i}" for i in range(16)]


@dataclass
class Sticky:
    gw: GatewayProcess
    a: FakeUpstream
    b: FakeUpstream
    client: openai.OpenAI

    def send(self, model: str = "sticky", user: str | None = None, session: str | None = None) -> tuple[str, str]:
        """(the fake that served, the API key it was sent)."""
        before = len(self.a.received), len(self.b.received)
        extra: Any = {"metadata": {"user": user}} if user else {}
        headers = {"x-session": session} if session else None
        self.client.chat.completions.create(model=model, messages=HI, extra_headers=headers, **extra)
        served = [f for f, n in ((self.a, before[0]), (self.b, before[1])) if len(f.received) > n]
        assert len(served) == 1
        fake = served[0]
        return fake.name, fake.received[-1].headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def sticky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sticky]:
    a, b = FakeUpstream("a").start(), FakeUpstream("b").start()
    root = tmp_path_factory.mktemp("affinity")
    (root / "policies").mkdir()
    (root / "policies" / "bundle.toml").write_text(BUNDLE.format(a=a.base_url, b=b.base_url, h=key_hash(KEY)))
    try:
        with GatewayProcess(root / "policies", root / "data") as gw:
            yield Sticky(gw, a, b, openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0))
    finally:
        a.stop()
        b.stop()


def _pins(sticky: Sticky) -> dict[str, tuple[str, str]]:
    pins = {}
    for user in USERS:
        seen = {sticky.send(user=user) for _ in range(3)}
        assert len(seen) == 1, f"{user} was served by {seen}"
        pins[user] = seen.pop()
    return pins


def test_the_same_value_goes_to_the_same_target_and_key(sticky: Sticky) -> None:
    pins = _pins(sticky)
    assert {fake for fake, _ in pins.values()} == {"a", "b"}  # values spread over both targets
    assert len({key for _, key in pins.values()}) >= 3  # and over the keys
    assert pins == _pins(sticky)  # and stay where they are
    sessions = {sticky.send("by-session", session="s-1") for _ in range(4)}
    assert len(sessions) == 1


def test_a_request_without_the_value_is_routed_as_usual(sticky: Sticky) -> None:
    assert sticky.send()[0] in ("a", "b")  # request.metadata.user missing: no affinity, no error


def test_the_ledger_keeps_a_hash_and_the_cache_hit_rate(sticky: Sticky) -> None:
    digest = hashlib.sha256(b"user-0").hexdigest()[:16]
    rows = sticky.gw.usage_rows(f"select * from cache_hits_by_affinity where affinity_key = '{digest}'",
                                until=lambda r: bool(r) and r[0]["requests"] >= 6)
    assert (rows[0]["requests"], rows[0]["prompt_tokens"], rows[0]["cached_tokens"]) == (6, 72, 24)
    assert rows[0]["cache_hit_rate"] == pytest.approx(0.3333)
    raw = sticky.gw.usage_sql("select count(*) as n from usage where affinity_key = 'user-0'")
    assert raw[0]["n"] == 0  # never the value itself


def test_a_refused_key_moves_its_values_to_the_next_key_only(sticky: Sticky) -> None:
    user = USERS[1]
    fake_name, key = sticky.send(user=user)
    fake = sticky.a if fake_name == "a" else sticky.b
    fake.reject_keys.add(key)
    try:
        moved = sticky.send(user=user)
        assert moved[0] == fake_name and moved[1] != key
        assert {sticky.send(user=user) for _ in range(3)} == {moved}  # the key stays benched: pinned anew
    finally:
        fake.reject_keys.clear()


def test_an_open_breaker_repins_its_values_and_only_those(sticky: Sticky) -> None:
    pins = {user: sticky.send(user=user) for user in USERS}
    on_a = [u for u, (fake, _) in pins.items() if fake == "a"]
    on_b = [u for u, (fake, _) in pins.items() if fake == "b"]
    sticky.a.script("chat-model", status=500, times=1)  # one failure opens pa's breaker (failures = 1)
    before = len(sticky.a.received), len(sticky.b.received)
    sticky.client.chat.completions.create(model="sticky", messages=HI, metadata={"user": on_a[0]})
    assert (len(sticky.a.received), len(sticky.b.received)) == (before[0] + 1, before[1] + 1)  # retried on b
    moved = {u: sticky.send(user=u) for u in on_a}
    assert {fake for fake, _ in moved.values()} == {"b"}
    assert {u: sticky.send(user=u) for u in on_a} == moved  # pinned to their new place
    assert {u: sticky.send(user=u) for u in on_b} == {u: pins[u] for u in on_b}  # the others stay
