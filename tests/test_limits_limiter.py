"""The limiter in-process, on the memory store: scopes, headers, refusals, periods, usage view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.billing.answers import duration
from gateway.billing.limiter import EnforcingLimiter
from gateway.billing.limits import Admission
from gateway.billing.plan import EMPTY, declares_limits
from gateway.billing.store import MemoryStore
from gateway.config import load_snapshot
from gateway.config.periods import Calendar, window_at
from gateway.config.snapshot import Snapshot
from gateway.errors import BudgetExceeded, LimitsUnavailable, RateLimited
from gateway.usage.record import UsageRecord
from tests.conftest import key_hash

BUNDLE = """
schema = 1
[settings]
timezone = "Europe/Berlin"
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["m-a", "m-b", "big-1"]

[group.team]
limits = {{ rpm = 3 }}
model_limits = {{ "big-*" = {{ concurrency = 1 }} }}
budget = {{ usd = 1.0, period = "day" }}

[[key]]
id = "free"
hash = "{h}"

[[key]]
id = "k1"
hash = "{h1}"
group = "team"
limits = {{ rpm = 100, tpm = 1000 }}
model_limits = {{ "m-a" = {{ rpm = 2 }} }}

[[key]]
id = "k2"
hash = "{h2}"
group = "team"
budget = {{ usd = 0.5, period = "month" }}
{rules}
"""


def snapshot(tmp_path: Path, rules: str = "") -> Snapshot:
    text = BUNDLE.format(h=key_hash("a"), h1=key_hash("b"), h2=key_hash("c"), rules=rules)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "b.toml").write_text(text)
    return load_snapshot(tmp_path)


def record(tokens: int = 0, usd: str | None = None) -> UsageRecord:
    now = datetime.now(UTC)
    return UsageRecord(request_id="r", started_at=now, finished_at=now, prompt_tokens=tokens,
                       cost_usd=Decimal(usd) if usd else None)


def go(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_key_without_limits_costs_no_store_call(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore())
    admission = go(limiter.admit(snap, snap.keys_by_id["free"], "m-a", 10))
    assert admission.headers == [] and admission.token is None
    assert limiter._plans[("free", "m-a")] is EMPTY
    assert declares_limits(snap)


def test_key_model_and_group_limits_all_apply(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore())
    k1, k2 = snap.keys_by_id["k1"], snap.keys_by_id["k2"]

    async def scenario() -> list[Any]:
        out: list[Any] = []
        for key, model in [(k1, "m-a"), (k1, "m-a"), (k1, "m-a"), (k1, "m-b"), (k2, "m-b")]:
            try:
                out.append(await limiter.admit(snap, key, model, 10))
            except RateLimited as exc:
                out.append(exc)
        return out

    a1, a2, a3, b1, k2b = go(scenario())
    assert dict(a1.headers)["x-ratelimit-remaining-requests"] == "1"  # key k1 on m-a: 2 rpm
    assert dict(a1.headers)["x-ratelimit-limit-tokens"] == "1000"
    assert isinstance(a3, RateLimited) and "key `k1` on model `m-a`: 2 requests per minute (rpm)" in a3.message
    assert dict(a3.headers)["retry-after"] == "30"
    assert isinstance(b1, Admission)  # other model: the group's third request
    assert isinstance(k2b, RateLimited) and "group `team`" in k2b.message  # shared by k1 and k2


def test_group_model_glob_concurrency_is_released_at_settle(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore())
    k1 = snap.keys_by_id["k1"]

    async def scenario() -> str:
        held = await limiter.admit(snap, k1, "big-1", 10)
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(snap, k1, "big-1", 10)
        await limiter.settle(held, record(5))
        await limiter.admit(snap, k1, "big-1", 10)
        return refused.value.message

    assert "at most 1 at a time" in go(scenario())


def test_budget_refusal_names_the_budget_and_stops_sdk_retries(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore())
    k2 = snap.keys_by_id["k2"]

    async def scenario() -> BudgetExceeded:
        admission = await limiter.admit(snap, k2, "m-b", 10)
        await limiter.settle(admission, record(10, "0.5"))
        with pytest.raises(BudgetExceeded) as refused:
            await limiter.admit(snap, k2, "m-b", 10)
        return refused.value

    err = go(scenario())
    assert err.status == 429 and err.code == "budget_exceeded" and err.type == "insufficient_quota"
    assert "key `k2`: spent $0.50 of $0.50 this month (resets" in err.message
    assert "+01:00" in err.message or "+02:00" in err.message  # the bundle's zone
    assert ("x-should-retry", "false") in err.headers


def test_usage_view_only_when_rules_read_it(tmp_path: Path) -> None:
    plain = snapshot(tmp_path / "plain")
    assert go(EnforcingLimiter(MemoryStore()).usage(plain, plain.keys_by_id["k1"])) is None
    rules = '[[rule]]\nid = "r"\nwhen = "usage.budget_fraction > 0.5 || usage.rpm > 10"\ndeny = "slow down"\n'
    snap, limiter = snapshot(tmp_path / "rules", rules), EnforcingLimiter(MemoryStore())
    k2 = snap.keys_by_id["k2"]

    async def scenario() -> Any:
        admission = await limiter.admit(snap, k2, "m-b", 10)
        await limiter.settle(admission, record(30, "0.2"))
        return await limiter.usage(snap, k2)

    view = go(scenario())
    assert (view.spend_usd, view.budget_usd, view.rpm, view.tpm) == (0.2, 0.5, 1, 30)
    assert view.budget_fraction == pytest.approx(0.4)


class Ledger:
    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal:
        if kind == "group":  # team's budget is per day
            assert ident == "team" and since.hour == 0 and str(since.tzinfo) == "Europe/Berlin"
            return Decimal("0.1")
        assert ident == "k2" and since.day == 1 and since.hour == 0
        return Decimal("0.75")


def test_budget_counters_are_seeded_from_the_ledger(tmp_path: Path) -> None:
    snap, limiter = snapshot(tmp_path), EnforcingLimiter(MemoryStore(), spend_source=Ledger())
    with pytest.raises(BudgetExceeded, match=r"spent \$0.75 of \$0.50"):
        go(limiter.admit(snap, snap.keys_by_id["k2"], "m-b", 10))


class SlowLedger:
    """Answers only when released, counting the questions (a ledger query takes milliseconds)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.asked, self.fail_first = 0, fail_first
        self.release = asyncio.Event()

    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal:
        self.asked += 1
        await self.release.wait()
        if self.fail_first and self.asked == 1:
            raise ConnectionRefusedError("ingester starting")
        return Decimal("0.1")


def test_a_burst_of_first_requests_asks_the_ledger_once_per_counter(tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    k2 = snap.keys_by_id["k2"]

    async def burst(ledger: SlowLedger) -> list[object]:
        limiter = EnforcingLimiter(MemoryStore(), spend_source=ledger, fail_open=False)
        tasks = [asyncio.create_task(limiter.admit(snap, k2, "m-b", 10)) for _ in range(20)]
        while ledger.asked < 1:  # the key's budget counter first, then its group's
            await asyncio.sleep(0)
        for _ in range(50):  # give the other 19 every chance to ask too
            await asyncio.sleep(0)
        asked = ledger.asked
        ledger.release.set()
        results: list[object] = await asyncio.gather(*tasks, return_exceptions=True)
        return [asked, ledger.asked, *results]

    asked_before, asked_after, *results = go(burst(SlowLedger()))
    assert (asked_before, asked_after) == (1, 2)  # one question per counter, not one per request
    assert not any(isinstance(r, LimitsUnavailable) for r in results)  # (some exceed the budget)
    assert any(not isinstance(r, BaseException) for r in results)
    # the first seed fails (fail closed): that request is refused, a waiter seeds it again
    asked_before, asked_after, *results = go(burst(SlowLedger(fail_first=True)))
    assert (asked_before, asked_after) == (1, 3)
    assert sum(isinstance(r, LimitsUnavailable) for r in results) == 1


def test_periods_are_calendar_aligned_in_the_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    t = datetime(2025, 3, 30, 12, tzinfo=berlin).timestamp()  # a Sunday; DST began at 02:00
    day, week, month = (window_at(p, berlin, t) for p in ("day", "week", "month"))
    assert day.name == "day:2025-03-30" and day.end == datetime(2025, 3, 31, tzinfo=berlin).timestamp()
    assert day.end - day.start.timestamp() == 23 * 3600
    assert week.name == "week:2025-03-24" and month.name == "month:2025-03-01"
    assert month.end == datetime(2025, 4, 1, tzinfo=berlin).timestamp()
    assert window_at("total", berlin, t).end is None
    late = datetime(2025, 12, 31, 23, 30, tzinfo=UTC).timestamp()  # already 2026 in Berlin
    assert Calendar("Europe/Berlin").current("month", late).name == "month:2026-01-01"


def test_reset_durations_look_like_openai() -> None:
    assert [duration(ms) for ms in (17, 1000, 1500, 59_999, 360_000)] == ["17ms", "1s", "1.5s", "59.999s",
                                                                          "6m0s"]


class DownLedger:
    async def spend_since(self, kind: str, ident: str, since: datetime) -> Decimal:
        raise ConnectionRefusedError("no ingester")


def test_budgets_are_not_guessed_while_the_ledger_is_down(tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    k2 = snap.keys_by_id["k2"]
    with pytest.raises(LimitsUnavailable) as refused:
        go(EnforcingLimiter(MemoryStore(), spend_source=DownLedger()).admit(snap, k2, "m-b", 10))
    assert refused.value.status == 503 and refused.value.code == "limits_unavailable"
    lenient = EnforcingLimiter(MemoryStore(), spend_source=DownLedger(), fail_open=True)
    assert go(lenient.admit(snap, k2, "m-b", 10)).token is not None  # counted from zero


def test_a_reloaded_bundle_changes_limits_at_once_and_keeps_counts(tmp_path: Path) -> None:
    before = snapshot(tmp_path / "a")
    after = load_snapshot_with(tmp_path / "b", before, "limits = { rpm = 3 }",
                               "limits = { rpm = 30 }")
    limiter = EnforcingLimiter(MemoryStore())

    async def scenario() -> list[str]:
        out = []
        for snap in (before, before, after, after, after):
            try:
                admission = await limiter.admit(snap, snap.keys_by_id["k1"], "m-b", 1)
                out.append(dict(admission.headers)["x-ratelimit-remaining-requests"])
            except RateLimited:
                out.append("refused")
        return out

    # Group `team` goes from 3 to 30 a minute: the two requests made under the old bundle used
    # 2/3 of its bucket, which stays used (20 of 30) under the new limit.
    assert go(scenario()) == ["2", "1", "9", "8", "7"]


def load_snapshot_with(directory: Path, base: Snapshot, old: str, new: str) -> Snapshot:
    directory.mkdir(parents=True)
    text = (Path(base.directory) / "b.toml").read_text()
    assert old in text
    (directory / "b.toml").write_text(text.replace(old, new))
    return load_snapshot(directory)


def test_remaining_never_exceeds_the_limit() -> None:
    """A full bucket's tolerance must not show as remaining > limit in x-ratelimit headers."""
    from gateway.billing.answers import rate_headers
    from gateway.billing.plan import Plan, Rate
    from gateway.billing.store import Grant

    plan = Plan(rates=(Rate("r:k:x", "key `x`", "requests", 100),))
    headers = dict(rate_headers(plan, Grant(True, remaining=[102], reset_ms=[0])))
    assert headers["x-ratelimit-remaining-requests"] == "100"
