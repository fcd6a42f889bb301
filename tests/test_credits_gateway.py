"""Prepaid credits through a real gateway (one worker, memory store): top-ups over the admin API
and the CLI, the 402 in each client's shape, redemption codes, the balance header, a killed
ledger owner, and the balance against the SQL sum after 1,000 mixed requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gateway.usage.client import call
from gateway.usage.codes import code_hash, new_code
from tests.credits_support import (
    ADMIN,
    SECRETS,
    admin_headers,
    balance,
    chat,
    redeem,
    tollgate,
    top_up,
    write_bundle,
)
from tests.gateway_process import GatewayProcess

HEADER = "x-tollgate-balance-usd"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("credits")
    with GatewayProcess(write_bundle(root / "policies"), root / "data") as gateway:
        yield gateway


def test_top_up_is_recorded_once_and_bad_input_is_refused(gw: GatewayProcess) -> None:
    first = top_up(gw, "carol", "0.5", reference="inv-7")
    assert first.status_code == 201, first.text
    assert first.json()["balance_usd"] == "0.500000000" and first.json()["duplicate"] is False
    again = top_up(gw, "carol", 0.5, reference="inv-7")  # a replayed request: the same entry
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["entry"]["id"] == first.json()["entry"]["id"]
    conflict = top_up(gw, "carol", "5", reference="inv-7")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "reference_conflict"
    for usd, code in (("-1", "invalid_amount"), ("ten", "invalid_amount"), (None, "invalid_amount"),
                      ("1e400", "invalid_amount"), ("0.5000000001", "invalid_amount")):
        bad = top_up(gw, "carol", usd)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, code), (usd, bad.text)
    unknown = top_up(gw, "nobody", "1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_key")
    extra = httpx.post(f"{gw.url}/admin/credits", json={"key": "carol", "usd": 1, "amount": 1},
                       headers=admin_headers())
    assert extra.status_code == 400 and "amount" in extra.json()["error"]["message"]
    junk = httpx.post(f"{gw.url}/admin/credits", content=b"{not json", headers=admin_headers())
    assert junk.status_code == 400
    client_key = httpx.post(f"{gw.url}/admin/credits", json={"key": "carol", "usd": 1},
                            headers={"authorization": f"Bearer {SECRETS['carol']}"})
    assert client_key.status_code == 401
    assert httpx.get(f"{gw.url}/admin/credits/carol").status_code == 401
    assert httpx.get(f"{gw.url}/admin/credits/nobody", headers=admin_headers()).status_code == 404
    shown = balance(gw, "carol")
    assert (shown["credits_usd"], shown["billing"], shown["low_balance_usd"]) == ("0.500000000", "prepaid", 1.0)
    assert shown["low_balance"] is True  # 0.5 < low_balance_usd = 1 (its group's)
    assert len(shown["entries"]) == 1  # nothing written twice
    assert ADMIN not in gw.log() and SECRETS["carol"] not in gw.log()


def test_spent_credit_is_a_402_in_every_client_shape(gw: GatewayProcess) -> None:
    refused = chat(gw, "bob")
    assert refused.status_code == 402 and refused.headers[HEADER] == "0.000000"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=SECRETS["bob"], max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 402 and err.value.code == "insufficient_quota"
    an = anthropic.Anthropic(base_url=gw.url, api_key=SECRETS["bob"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as aerr:
        an.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert aerr.value.status_code == 402
    assert aerr.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    gm = genai.Client(api_key=SECRETS["bob"], http_options=genai_types.HttpOptions(base_url=gw.url))
    with pytest.raises(genai_errors.ClientError) as gerr:
        gm.models.generate_content(model="m", contents="hi")
    assert gerr.value.code == 402 and gerr.value.status == "RESOURCE_EXHAUSTED"
    assert top_up(gw, "bob", "0.03", reference="bob-1").status_code == 201
    served = chat(gw, "bob")  # at once: the top-up went into this worker's limiter
    assert served.status_code == 200 and served.headers[HEADER] == "0.030000"
    cost = Decimal("0.03") - Decimal(balance(gw, "bob")["balance_usd"])
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {SECRETS['bob']}"},
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as streamed:
        assert streamed.status_code == 200 and streamed.headers[HEADER] == f"{Decimal('0.03') - cost:.6f}"
    assert chat(gw, "post").headers.get(HEADER) is None  # postpaid keys: no balance


def test_cli_top_up_list_and_report(gw: GatewayProcess) -> None:
    where = ["--data-dir", str(gw.data_dir), "--policies", str(gw.policies)]
    done = tollgate("credits", "add", "alice", "0.25", "--note", "wire transfer", "--reference", "wt-1", *where)
    assert done.returncode == 0 and "booked: entry" in done.stdout, done.stderr
    again = tollgate("credits", "add", "alice", "0.25", "--note", "wire transfer", "--reference", "wt-1", *where)
    assert again.returncode == 0 and "already booked" in again.stdout
    for bad, message in ((["alice", "-3"], "positive"), (["alice", "abc"], "not a number"),
                         (["nobody", "1"], "unknown key")):
        refused = tollgate("credits", "add", *bad, "--note", "x", *where)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    listed = tollgate("credits", "list", "alice", *where)
    assert listed.returncode == 0 and "wire transfer" in listed.stdout and "balance 0.25" in listed.stdout
    # the running gateway sees the CLI's top-up at the latest when the key would be refused
    served = chat(gw, "alice")
    assert served.status_code == 200 and served.headers[HEADER] == "0.250000"
    report = tollgate("usage", "report", "--data-dir", str(gw.data_dir))
    assert report.returncode == 0 and "balance_usd" in report.stdout and "alice" in report.stdout, report.stderr


def test_redemption_codes(gw: GatewayProcess) -> None:
    where = ["--data-dir", str(gw.data_dir), "--policies", str(gw.policies)]
    made = tollgate("codes", "new", "--usd", "0.2", "--count", "2", "--note", "promo", *where)
    assert made.returncode == 0, made.stderr
    codes = made.stdout.split()
    assert len(codes) == 2 and all(c.startswith("TG-") for c in codes)
    stored = call(gw.data_dir, {"op": "query", "sql": "SELECT code_hash FROM redemption_codes"})
    assert {r[0] for r in stored["rows"]} >= {code_hash(c) for c in codes}
    assert not any(c in str(stored) for c in codes)  # only hashes
    group_only = tollgate("codes", "new", "--usd", "1", "--group", "prepaid", *where).stdout.split()[0]
    assert tollgate("codes", "new", "--usd", "1", "--group", "nope", *where).returncode == 1
    assert tollgate("codes", "new", "--usd", "-1", *where).returncode == 1
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    expired = new_code()
    call(gw.data_dir, {"op": "codes_add", "hashes": [code_hash(expired)], "usd": "1", "batch": "old",
                       "expires": past})

    ok = redeem(gw, "carol", codes[0].lower())
    assert ok.status_code == 200 and ok.json()["redeemed_usd"] == "0.200000000", ok.text
    results = {
        "used": redeem(gw, "carol", codes[0]),
        "typo": redeem(gw, "carol", codes[1][:-1] + ("A" if codes[1][-1] != "A" else "B")),
        "unknown": redeem(gw, "carol", new_code()),
        "expired": redeem(gw, "carol", expired),
        "group": redeem(gw, "alice", group_only),
    }
    got = {name: (r.status_code, r.json()["error"]["code"]) for name, r in results.items()}
    assert got == {"used": (409, "code_already_redeemed"), "typo": (400, "invalid_code"),
                   "unknown": (404, "code_not_found"), "expired": (410, "code_expired"),
                   "group": (403, "code_wrong_group")}
    assert redeem(gw, "carol", group_only).status_code == 200
    rows = call(gw.data_dir, {"op": "query", "sql": "SELECT count(*) FROM credits WHERE kind = 'redeem'"})
    assert rows["rows"] == [[2]]
    junk = httpx.post(f"{gw.url}/v1/dashboard/redeem", json={"coupon": "x"},
                      headers={"authorization": f"Bearer {SECRETS['carol']}"})
    assert junk.status_code == 400
    assert httpx.post(f"{gw.url}/v1/dashboard/redeem", json={"code": codes[1]}).status_code == 401


def test_redemption_attempts_are_rate_limited_per_key(gw: GatewayProcess) -> None:
    answers = [redeem(gw, "post", "TG-AAAA-AAAA-AAAA-AAAA-AA").status_code for _ in range(11)]
    assert answers[:10] == [400] * 10 and answers[10] == 429
    assert redeem(gw, "alice", "TG-AAAA-AAAA-AAAA-AAAA-AA").status_code == 400  # another key: its own


def test_balance_equals_the_sql_sum_after_1000_mixed_requests(gw: GatewayProcess) -> None:
    assert top_up(gw, "dave", "100", reference="start").status_code == 201
    codes = tollgate("codes", "new", "--usd", "5", "--count", "3", "--data-dir", str(gw.data_dir),
                     "--policies", str(gw.policies)).stdout.split()
    statuses = asyncio.run(_mixed(gw, codes))
    assert statuses.count(200) == 1000, sorted(set(statuses))
    shown = balance(gw, "dave")  # loads every spooled row first
    sql = call(gw.data_dir, {"op": "query", "sql":
                             "SELECT (SELECT sum(amount_usd) FROM credits WHERE key_id = 'dave') "
                             "- (SELECT sum(cost_usd) FROM usage WHERE key_id = 'dave'), "
                             "(SELECT count(*) FROM usage WHERE key_id = 'dave')"})["rows"][0]
    assert sql[1] == 1000
    assert Decimal(str(sql[0])) == Decimal(shown["balance_usd"])
    assert Decimal(shown["credits_usd"]) == Decimal("115.5")  # 100 + 3 codes + 10 * 0.05
    # the limiter's running balance (the store's counters) is the ledger's, to the micro-dollar
    assert chat(gw, "dave").headers[HEADER] == f"{Decimal(shown['balance_usd']):.6f}"


async def _mixed(gw: GatewayProcess, codes: list[str]) -> list[int]:
    headers = {"authorization": f"Bearer {SECRETS['dave']}"}
    msgs = [{"role": "user", "content": "hi there"}]
    bodies = [
        ("/v1/chat/completions", {"model": "m", "max_tokens": 5, "messages": msgs}),
        ("/v1/chat/completions", {"model": "m", "stream": True, "stream_options": {"include_usage": True},
                                  "messages": msgs}),
        ("/v1/completions", {"model": "m", "prompt": "say hello", "max_tokens": 5}),
        ("/v1/embeddings", {"model": "m", "input": "embed these words"}),
    ]
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30, limits=httpx.Limits(max_connections=16)) as http:

        async def one(i: int) -> int:
            async with sem:
                if i % 100 == 50:  # top-ups and redemptions while requests spend
                    await http.post("/admin/credits", headers=admin_headers(),
                                    json={"key": "dave", "usd": "0.05", "reference": f"mix-{i}"})
                if i % 400 == 7:
                    await http.post("/v1/dashboard/redeem", headers=headers, json={"code": codes[i // 400]})
                path, body = bodies[i % len(bodies)]
                answer = await http.post(path, json=body, headers=headers)
                return answer.status_code

        return list(await asyncio.gather(*(one(i) for i in range(1000))))


def _owner_pid(data_dir: Path) -> int:
    """The ledger owner process of this gateway (its command line names the data dir)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway.usage.ingester" in cmdline and str(data_dir).encode() in cmdline:
            return int(entry)
    raise AssertionError("no ledger owner process found")


def test_top_up_survives_a_killed_ledger_owner(gw: GatewayProcess) -> None:
    """Last in this module: it kills the module's gateway."""
    before = Decimal(balance(gw, "bob")["credits_usd"])
    answer = top_up(gw, "bob", "7.25", reference="kill-1")
    assert answer.status_code == 201
    os.kill(_owner_pid(gw.data_dir), signal.SIGKILL)  # right after the answer
    # a worker takes the ledger over: it opens the file, and the entry is there
    assert Decimal(balance(gw, "bob")["credits_usd"]) == before + Decimal("7.25")
    gw.kill()
    with GatewayProcess(gw.policies, gw.data_dir) as again:
        shown = balance(again, "bob")
        assert Decimal(shown["credits_usd"]) == before + Decimal("7.25")
        assert top_up(again, "bob", "7.25", reference="kill-1").json()["duplicate"] is True
        assert chat(again, "bob").headers[HEADER] == f"{Decimal(shown['balance_usd']):.6f}"
