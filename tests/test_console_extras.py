"""The console's key-holder redemption form and its recent-tasks tables, against a real gateway
(the prepaid-credits bundle of tests/credits_support.py: client keys, an admin key, codes)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from gateway.usage.client import call
from gateway.usage.codes import new_code
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter
from tests.console_support import csrf_of, sign_in
from tests.credits_support import ADMIN, SECRETS, balance, tollgate, write_bundle
from tests.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("console-extras")
    with GatewayProcess(write_bundle(root / "policies"), root / "data") as gateway:
        yield gateway


def new_codes(gw: GatewayProcess, usd: str, count: int = 1) -> list[str]:
    made = tollgate("codes", "new", "--usd", usd, "--count", str(count), "--data-dir", str(gw.data_dir),
                    "--policies", str(gw.policies))
    assert made.returncode == 0, made.stderr
    return made.stdout.split()


def post_code(client: httpx.Client, code: str, **headers: str) -> httpx.Response:
    csrf = csrf_of(client.get("/console/me").text)
    return client.post("/console/me/redeem", data={"csrf": csrf, "code": code}, headers=headers)


def result(page: str) -> str:
    match = re.search(r'id="redeem-result"[^>]*>([^<]*)<', page)
    assert match, page[:2000]
    return match.group(1)


def section(page: str, table_id: str) -> str:
    start = page.index(f'id="{table_id}"')
    return page[start:page.index("</table>", start)]


def test_a_key_holder_redeems_a_code_and_sees_the_new_balance(gw: GatewayProcess) -> None:
    client, answer = sign_in(gw, SECRETS["carol"])
    assert answer.status_code == 303
    before = client.get("/console/me")  # fills the page cache: the redemption must drop it
    assert 'id="redeem"' in before.text and 'action="/console/me/redeem"' in before.text
    assert "redeem-result" not in before.text
    code = new_codes(gw, "0.2")[0]
    done = post_code(client, code.lower())
    assert done.status_code == 303 and done.headers["location"] == "/console/me"
    page = client.get("/console/me").text
    assert result(page) == "Code redeemed: $0.20 credited to this key; its balance is now $0.20."
    assert "0.200000000" in section(page, "balances")  # the cached figures were dropped
    assert "redeem-result" not in client.get("/console/me").text  # the outcome is shown once
    assert balance(gw, "carol")["credits_usd"] == "0.200000000"
    assert SECRETS["carol"] not in page and code not in page

    post_code(client, code)
    assert "already redeemed (by this key" in result(client.get("/console/me").text)
    post_code(client, code[:-1] + ("A" if code[-1] != "A" else "B"))
    assert "typo" in result(client.get("/console/me").text)
    post_code(client, new_code())
    page = client.get("/console/me").text
    assert "does not exist" in result(page) and '<p class="error" id="redeem-result"' in page
    assert balance(gw, "carol")["credits_usd"] == "0.200000000"  # nothing credited twice


def test_redemption_attempts_are_limited_like_the_api(gw: GatewayProcess) -> None:
    client, _ = sign_in(gw, SECRETS["dave"])
    for _ in range(10):
        post_code(client, "TG-AAAA-AAAA-AAAA-AAAA-AA")
    assert "typo" in result(client.get("/console/me").text)
    post_code(client, new_codes(gw, "1")[0])
    assert "too many redemption attempts" in result(client.get("/console/me").text)
    api = httpx.post(f"{gw.url}/v1/dashboard/redeem", json={"code": "TG-AAAA-AAAA-AAAA-AAAA-AA"},
                     headers={"authorization": f"Bearer {SECRETS['dave']}"})
    assert api.status_code == 429 and api.headers["retry-after"]  # one rate, both doors


def test_the_form_needs_its_csrf_token_and_this_origin(gw: GatewayProcess) -> None:
    client, _ = sign_in(gw, SECRETS["alice"])
    code = new_codes(gw, "3")[0]
    missing = client.post("/console/me/redeem", data={"code": code})
    wrong = client.post("/console/me/redeem", data={"code": code, "csrf": "forged"})
    assert missing.status_code == 403 and wrong.status_code == 403
    assert "not sent from this console" in missing.text
    cross = post_code(client, code, origin="https://evil.example")
    assert cross.status_code == 403
    anonymous = httpx.post(f"{gw.url}/console/me/redeem", data={"code": code, "csrf": "x"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"
    other, _ = sign_in(gw, SECRETS["bob"])  # another session's token is not this one's
    stolen = csrf_of(other.get("/console/me").text)
    assert client.post("/console/me/redeem", data={"code": code, "csrf": stolen}).status_code == 403
    assert Decimal(balance(gw, "alice")["credits_usd"]) == 0
    assert post_code(client, code).status_code == 303  # the code is still good
    assert Decimal(balance(gw, "alice")["credits_usd"]) == 3


def test_the_operator_view_has_no_redeem_form(gw: GatewayProcess) -> None:
    client, answer = sign_in(gw, ADMIN)
    assert answer.status_code == 303
    page = client.get("/console/keys/carol")
    assert page.status_code == 200 and 'id="redeem"' not in page.text and "me/redeem" not in page.text
    assert 'id="redeem"' not in client.get("/console/").text
    code = new_codes(gw, "1")[0]
    refused = client.post("/console/me/redeem", data={"code": code, "csrf": csrf_of(page.text)})
    assert refused.status_code == 403 and "client key" in refused.text
    assert client.get("/console/me").status_code == 303  # an operator has no key of their own


def _task_rows(gw: GatewayProcess) -> None:
    """A finished task of carol (charged, 12 s), a failed one of carol (refunded), a pending one of bob."""
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(seconds=12)
    rows = [
        UsageRecord(request_id="rq-c1", started_at=now, finished_at=now, key_id="carol", endpoint="/v1/videos",
                    requested_model="sora-2", served_model="sora-2", provider="oa", status=200,
                    cost_usd=Decimal("0.8"), task_id="video_carol_1"),
        UsageRecord(request_id="rq-c1-done", started_at=now, finished_at=later, key_id="carol",
                    endpoint="/v1/videos", status=200, error_type="task_succeeded", latency_ms=12000.0,
                    cost_usd=Decimal("0"), task_id="video_carol_1"),
        UsageRecord(request_id="rq-c2", started_at=now, finished_at=now, key_id="carol", endpoint="/suno/submit",
                    served_model="suno", provider="suno-a", status=200, cost_usd=Decimal("0.1"),
                    task_id="suno_carol_2"),
        UsageRecord(request_id="rq-c2-refund", started_at=now, finished_at=later, key_id="carol",
                    endpoint="/suno/submit", status=200, cost_usd=Decimal("-0.1"), task_id="suno_carol_2"),
        UsageRecord(request_id="rq-b1", started_at=now, finished_at=now, key_id="bob", endpoint="/v1/videos",
                    served_model="sora-2", provider="oa", status=200, cost_usd=Decimal("0.4"),
                    task_id="video_bob_1"),
    ]
    writer = SpoolWriter(gw.data_dir / "spool", rotate_s=0.0)
    for row in rows:
        writer.append(row)
    writer.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if call(gw.data_dir, {"op": "query", "sql": "SELECT count(*) FROM tasks"})["rows"] == [[3]]:
            return
        time.sleep(0.1)
    raise AssertionError("the task rows did not reach the ledger")


def test_tasks_show_for_the_operator_and_for_their_own_key_only(gw: GatewayProcess) -> None:
    _task_rows(gw)
    fresh = "?range=7d"  # a query no earlier test's page cached (figures are kept 10 s)
    admin, _ = sign_in(gw, ADMIN)
    table = section(admin.get(f"/console/{fresh}").text, "tasks")
    for text in ("video_carol_1", "suno_carol_2", "video_bob_1", 'href="/console/keys/bob"', "succeeded",
                 "failed", "pending", "12.0 s", "$0.8000"):
        assert text in table, text
    carol, _ = sign_in(gw, SECRETS["carol"])
    mine = section(carol.get(f"/console/me{fresh}").text, "tasks")
    assert "video_carol_1" in mine and "suno_carol_2" in mine and "video_bob_1" not in mine
    row = mine[mine.index("suno_carol_2"):]
    row = row[:row.index("</tr>")]
    assert "failed" in row and row.count("$0.1000") == 2  # charged and refunded; net $0.00
    bob, _ = sign_in(gw, SECRETS["bob"])
    theirs = section(bob.get(f"/console/me{fresh}").text, "tasks")
    assert "video_bob_1" in theirs and "carol" not in theirs
    assert "video_bob_1" in section(admin.get(f"/console/keys/bob{fresh}").text, "tasks")
