"""Prepaid credits without a server: codes, the DuckDB side (entries, idempotency, redemption,
views) and the limiter's enforcement on the memory store."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.billing.credits import BALANCE_HEADER, InsufficientCredit
from gateway.billing.limiter import EnforcingLimiter
from gateway.billing.store import MemoryStore
from gateway.config import load_snapshot
from gateway.usage.codes import BadCode, code_hash, new_code, normalise
from gateway.usage.credits_store import dispatch
from gateway.usage.record import UsageRecord
from gateway.usage.store import LedgerStore
from tests.conftest import key_hash

BUNDLE = """
schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["m"]

[price.m]
input = 1000.0   # 0.001 USD a prompt token
output = 1000.0

[group.pre]
billing = "prepaid"
credit_limit = 0.5
low_balance_usd = 1

[[key]]
id = "pp"
hash = "{h1}"
billing = "prepaid"

[[key]]
id = "od"
hash = "{h2}"
group = "pre"

[[key]]
id = "post"
hash = "{h3}"
"""


# --- codes ----------------------------------------------------------------------------------


def test_codes_round_trip_and_typos_are_caught_without_a_lookup() -> None:
    code = new_code()
    assert code.startswith("TG-") and len(code) == 25
    assert normalise(code.lower().replace("-", " ")) == normalise(code)
    assert len(code_hash(code)) == 64
    body = code[3:]
    typo = "TG-" + ("B" if body[0] != "B" else "C") + body[1:]
    with pytest.raises(BadCode, match="typo"):
        code_hash(typo)
    for junk in ("", "TG-1234", "hello world", code + "A", code.replace(code[5], "0")):
        with pytest.raises(BadCode):
            code_hash(junk)
    assert len({new_code() for _ in range(200)}) == 200


# --- the ledger side ------------------------------------------------------------------------


@pytest.fixture()
def ledger(tmp_path: Path) -> Any:
    store = LedgerStore(tmp_path / "usage.duckdb")
    yield store
    store.close()


def ask(store: LedgerStore, **request: Any) -> dict[str, Any]:
    return dispatch(store.con, request)


def spend(store: LedgerStore, key: str, cost: str, rid: str) -> None:
    now = dt.datetime.now(dt.UTC)
    rec = UsageRecord(request_id=rid, started_at=now, finished_at=now, key_id=key, cost_usd=Decimal(cost))
    spool = store.spool_dir / f"seg-{rid}.jsonl"
    import msgspec

    spool.write_bytes(msgspec.json.encode(rec) + b"\n")
    assert store.ingest([spool]) == 1


def test_top_up_is_idempotent_by_reference_and_bad_amounts_are_refused(ledger: LedgerStore) -> None:
    first = ask(ledger, op="credit_add", key_id="pp", usd="10", reference="inv-1", note="invoice 1", actor="t")
    assert first["duplicate"] is False and first["balance"] == "10.000000000" and first["seq"] == 1
    again = ask(ledger, op="credit_add", key_id="pp", usd="10", reference="inv-1", note="resent", actor="t")
    assert again["duplicate"] is True and again["entry"]["id"] == first["entry"]["id"]
    conflict = ask(ledger, op="credit_add", key_id="pp", usd="11", reference="inv-1")
    assert conflict["error_code"] == "reference_conflict" and conflict["status"] == 409
    for bad in ("-5", "abc", "NaN", "Infinity", "0", "1e9", "0.0000000001", None, True, [1]):
        answer = ask(ledger, op="credit_add", key_id="pp", usd=bad)
        assert answer["error_code"] == "invalid_amount", (bad, answer)
    assert ask(ledger, op="credit_add", key_id="pp", usd="-2", kind="adjust")["balance"] == "8.000000000"
    assert ask(ledger, op="credit_add", key_id="pp", usd="1", kind="redeem")["error_code"] == "invalid_kind"
    assert ask(ledger, op="credit_add", key_id="bad key!", usd="1")["error_code"] == "invalid_key"
    assert ask(ledger, op="credit_add", key_id="pp", usd="1", reference="code:x")["error_code"] == "invalid_reference"
    spend(ledger, "pp", "0.25", "r1")
    total = ask(ledger, op="credit_total", key_id="pp")
    assert (total["credits"], total["spent"], total["balance"]) == ("8.000000000", "0.250000000", "7.750000000")
    rows = ledger.con.execute("SELECT key_id, credits_usd, spent_usd, balance_usd FROM balances").fetchall()
    assert rows == [("pp", Decimal("8"), Decimal("0.25"), Decimal("7.75"))]
    history = ledger.con.execute("SELECT kind, amount_usd, credits_total_usd FROM credit_history").fetchall()
    assert history == [("topup", Decimal(10), Decimal(10)), ("adjust", Decimal(-2), Decimal(8))]
    assert ledger.con.execute("SELECT count(*) FROM credits").fetchone() == (2,)
    ask(ledger, op="credit_add", key_id="other", usd="1")
    swept = ask(ledger, op="credit_changes", after=1)  # keys with entries newer than entry 1
    assert swept == {"changes": [["other", "1.000000000", 3], ["pp", "8.000000000", 2]], "seq": 3} or \
        swept == {"changes": [["pp", "8.000000000", 2], ["other", "1.000000000", 3]], "seq": 3}
    assert ask(ledger, op="credit_changes", after=3) == {"changes": [], "seq": 3}
    assert ask(ledger, op="credit_changes", after=-1)["error_code"] == "invalid_after"


def test_entries_survive_reopening_the_file(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "usage.duckdb")
    ask(store, op="credit_add", key_id="pp", usd="3.5", reference="r")
    store._writer.close()  # no clean close: what a killed owner leaves
    again = LedgerStore(tmp_path / "usage.duckdb")
    try:
        assert ask(again, op="credit_total", key_id="pp")["credits"] == "3.500000000"
    finally:
        again.close()


def test_codes_redeem_once_with_distinct_errors(ledger: LedgerStore) -> None:
    good, used_up, old, grouped = (new_code() for _ in range(4))
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    assert ask(ledger, op="codes_add", hashes=[code_hash(good), code_hash(used_up)], usd="5", batch="b1",
               expires=future)["added"] == 2
    ask(ledger, op="codes_add", hashes=[code_hash(old)], usd="5", batch="b2", expires=past)
    ask(ledger, op="codes_add", hashes=[code_hash(grouped)], usd="5", batch="b3", group="pre")
    assert ask(ledger, op="codes_add", hashes=[code_hash(good)], usd="5")["error_code"] == "conflict"
    ok = ask(ledger, op="redeem", code_hash=code_hash(good), key_id="pp", actor="pp")
    assert ok["entry"]["kind"] == "redeem" and ok["balance"] == "5.000000000"
    again = ask(ledger, op="redeem", code_hash=code_hash(good), key_id="od")
    assert (again["error_code"], again["status"]) == ("code_already_redeemed", 409)
    assert ask(ledger, op="redeem", code_hash=code_hash(new_code()), key_id="pp")["error_code"] == "code_not_found"
    assert ask(ledger, op="redeem", code_hash=code_hash(old), key_id="pp")["error_code"] == "code_expired"
    assert ask(ledger, op="redeem", code_hash=code_hash(grouped), key_id="pp")["error_code"] == "code_wrong_group"
    assert "entry" in ask(ledger, op="redeem", code_hash=code_hash(grouped), key_id="od", group="pre")
    assert ledger.con.execute("SELECT count(*) FROM credits WHERE kind = 'redeem'").fetchone() == (2,)
    assert ledger.con.execute("SELECT count(*) FROM redemption_codes").fetchone() == (4,)


# --- enforcement on the memory store ----------------------------------------------------------


class Credits:
    """A CreditSource standing in for the ledger."""

    def __init__(self) -> None:
        self.usd, self.seq, self.reads = Decimal(0), 0, 0

    async def credit_total(self, key_id: str) -> tuple[Decimal, int]:
        self.reads += 1
        return (self.usd, self.seq) if key_id == "pp" else (Decimal(0), 0)

    async def credit_changes(self, after: int) -> tuple[list[tuple[str, Decimal, int]], int]:
        self.reads += 1
        return ([("pp", self.usd, self.seq)] if self.seq > after else []), self.seq


class Spent:
    async def spend_since(self, kind: str, ident: str, since: dt.datetime) -> Decimal:
        return Decimal("0.004")  # spent before this process started


class Row:
    def __init__(self, cost: str) -> None:
        self.prompt_tokens, self.completion_tokens, self.cost_usd = 1, 1, Decimal(cost)


def test_prepaid_reserves_settles_and_refuses_with_402(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.billing.credits.RETRY_S", 0.0)  # a refusal re-reads the credits
    (tmp_path / "b.toml").write_text(BUNDLE.format(h1=key_hash("a"), h2=key_hash("b"), h3=key_hash("c")))
    snap = load_snapshot(tmp_path)
    pp, od, post = (snap.keys_by_id[k] for k in ("pp", "od", "post"))
    assert pp.prepaid is not None and od.prepaid is not None and od.prepaid.credit_limit == 0.5
    assert post.prepaid is None

    async def go() -> None:
        source = Credits()
        limiter = EnforcingLimiter(MemoryStore(), Spent(), credit_source=source)
        with pytest.raises(InsufficientCredit) as refused:  # no credits: refused, not a 500
            await limiter.admit(snap, pp, "m", 10, 5)
        assert refused.value.status == 402 and refused.value.code == "insufficient_quota"
        assert dict(refused.value.headers)[BALANCE_HEADER] == "-0.004000"
        source.usd, source.seq = Decimal("0.05"), 1
        await limiter.credits.apply("pp", source.usd, source.seq)  # a top-up through this worker
        # 0.05 - 0.004 left; each request reserves (5 prompt + 5 output) * 0.001 = 0.01 USD
        first = await limiter.admit(snap, pp, "m", 10, 5)
        assert dict(first.headers)[BALANCE_HEADER] == "0.046000"
        held = [first] + [await limiter.admit(snap, pp, "m", 10, 5) for _ in range(3)]
        with pytest.raises(InsufficientCredit, match="reserved by requests in flight"):
            await limiter.admit(snap, pp, "m", 10, 5)  # 0.004 + 4 * 0.01 + 0.01 > 0.05
        for a in held:
            await limiter.settle(a, Row("0.002"))  # real cost below the estimate
        after = await limiter.admit(snap, pp, "m", 10, 5)
        assert dict(after.headers)[BALANCE_HEADER] == "0.038000"
        await limiter.settle(after, Row("0.04"))  # alone, it may cost more than what was left
        with pytest.raises(InsufficientCredit, match="balance"):
            await limiter.admit(snap, pp, "m", 10, 5)
        # an older answer from the ledger never rolls a newer total back
        await limiter.credits.apply("pp", Decimal("0.01"), 0)
        reads = source.reads
        source.usd, source.seq = Decimal("1.05"), 2  # topped up elsewhere (CLI): seen at refusal
        ok = await limiter.admit(snap, pp, "m", 10, 5)
        assert dict(ok.headers)[BALANCE_HEADER] == "0.998000" and source.reads == reads + 1
        # overdraft: `od` has no credits but may go 0.5 below zero
        over = await limiter.admit(snap, od, "m", 10, 5)
        assert dict(over.headers)[BALANCE_HEADER] == "-0.004000"
        # a top-up booked elsewhere reaches the store through the background sweep
        monkeypatch.setattr("gateway.billing.credits.RESYNC_S", 0.0)
        source.usd, source.seq = Decimal("2.05"), 3
        await limiter.admit(snap, pp, "m", 10, 5)  # starts the sweep (this one uses the store's)
        await asyncio.gather(*limiter.credits._tasks)
        swept = await limiter.admit(snap, pp, "m", 10, 5)
        assert dict(swept.headers)[BALANCE_HEADER] == "1.998000"
        assert (await limiter.admit(snap, post, "m", 10, 5)).headers == []  # postpaid: untouched

    asyncio.run(go())


def test_check_refuses_credit_fields_that_cannot_apply(tmp_path: Path) -> None:
    from gateway.config import BundleError

    base = BUNDLE.format(h1=key_hash("a"), h2=key_hash("b"), h3=key_hash("c"))
    for extra, message in (('billing = "prepay"', "Invalid enum value 'prepay'"),
                           ("credit_limit = 5", "credit_limit applies to prepaid keys only"),
                           ("low_balance_usd = -1", "low_balance_usd"),
                           ("credit_limit = -1", "credit_limit")):
        (tmp_path / "b.toml").write_text(base.replace('id = "post"', f'id = "post"\n{extra}'))
        with pytest.raises(BundleError) as err:
            load_snapshot(tmp_path)
        assert message in str(err.value.problems), (extra, err.value.problems)
