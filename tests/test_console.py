"""The console over HTTP, against a real gateway process and its ledger: who may sign in and
see what, the session cookie and its failures, CSRF, security headers, bad filters, downloads.
(The same pages in a real browser: test_console_browser.py.)"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.console.session import COOKIE, SECRET_FILE, Signer
from tests.console_support import KEYS, REVOKED, csrf_of, sign_in, traffic, write_bundle
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("console").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("console")
    write_bundle(root / "policies", upstream)
    with GatewayProcess(root / "policies", root / "data") as process:
        yield process


@pytest.fixture(scope="module")
def sent(gw: GatewayProcess) -> dict[str, list[str]]:
    return traffic(gw)


def test_admin_key_opens_the_operator_view(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, answer = sign_in(gw, "admin")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    assert KEYS["admin"] not in cookie  # the key is exchanged, never stored
    page = client.get("/console/?range=24h&by=key")
    assert page.status_code == 200
    for text in ("Top keys", "alice", "bob", "Providers", "mock", "Policy", "Budgets and limits"):
        assert text in page.text
    assert 'href="/console/keys/alice' in page.text  # a key's rows link to its own view
    usage = client.get("/console/usage?key=bob")
    assert all(rid in usage.text for rid in sent["bob"])
    assert not any(rid in usage.text for rid in sent["alice"])
    assert client.get("/console/keys/alice").status_code == 200
    assert client.get("/console/keys/nobody").status_code == 404


def test_providers_show_breakers_and_benched_keys_masked(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, _ = sign_in(gw, "admin")
    page = client.get("/console/").text
    table = page[page.index('id="providers"'):page.index("</table>", page.index('id="providers"'))]
    row = table[table.index(">upstream<"):]
    row = row[:row.index("</tr>")]
    assert "closed" in row and "key sk-...9z9z" in row and "(401)" in row
    assert REVOKED not in page and "sk-good-0001" not in page  # provider keys only ever masked


def test_a_limit_near_exhaustion_is_flagged(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, _ = sign_in(gw, "admin")
    page = client.get("/console/").text
    near = page[page.index('id="near"'):page.index("</ul>", page.index('id="near"'))]
    assert "team" in near and "rpm" in near


def test_client_key_sees_only_its_own_view(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, answer = sign_in(gw, "alice")
    assert answer.status_code == 303
    assert client.get("/console/").headers["location"] == "/console/me"
    me = client.get("/console/me")
    assert me.status_code == 200
    assert all(rid not in me.text for rid in sent["bob"])
    for text in ("alice", "demo", "mock-large", "budget (month)", "snippet-openai", "snippet-anthropic",
                 "snippet-genai", f"{gw.url}"):
        assert text in me.text
    for other in ("bob", "switched-off", "ops", KEYS["bob"], "tg-console"):
        assert other not in me.text  # no other key's id, no secret
    for path in ("/console/usage", "/console/usage.csv", "/console/keys/bob", "/console/keys/alice",
                 "/console/api/live", "/console/usage.parquet?key=bob"):
        refused = client.get(path, follow_redirects=True)
        assert refused.status_code == 403, path
        assert "for operators" in refused.text and "bob" not in refused.text


def test_a_wrong_key_gives_the_same_answer_whether_it_exists_or_not(gw: GatewayProcess) -> None:
    answers = [sign_in(gw, secret)[1] for secret in ("tg-no-such-key", KEYS["off"], "")]
    assert [a.status_code for a in answers] == [401, 401, 401]
    messages = {a.text[a.text.index('id="signin-error"'):].split("</p>")[0] for a in answers}
    assert len(messages) == 1 and "cannot sign in" in messages.pop()
    assert all(COOKIE + "=" not in a.headers.get("set-cookie", "") for a in answers)
    assert "switched-off" not in answers[1].text


def test_tampered_or_expired_cookie_goes_back_to_sign_in(gw: GatewayProcess) -> None:
    client, _ = sign_in(gw, "admin")
    token = client.cookies[COOKIE]
    body, _, mac = token.partition(".")
    for bad in (f"{body}.{mac[:-2]}AA", f"{body[:-2]}xx.{mac}", "garbage", ""):
        answer = httpx.get(f"{gw.url}/console/", cookies={COOKIE: bad})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    signer = Signer((gw.data_dir / SECRET_FILE).read_bytes().strip())
    _, expired = signer.issue("admin", "ops", -1)
    answer = httpx.get(f"{gw.url}/console/", cookies={COOKIE: expired})
    assert answer.headers["location"] == "/console/login"
    _, forged_role = Signer(b"x" * 64).issue("admin", "ops", 3600)  # signed with another secret
    assert httpx.get(f"{gw.url}/console/", cookies={COOKIE: forged_role}).status_code == 303
    _, valid = signer.issue("admin", "ops", 3600)
    assert httpx.get(f"{gw.url}/console/", cookies={COOKIE: valid}).status_code == 200


def test_the_session_secret_is_private(gw: GatewayProcess) -> None:
    sign_in(gw, "admin")
    mode = stat.S_IMODE(os.stat(gw.data_dir / SECRET_FILE).st_mode)
    assert mode == 0o600
    assert len((gw.data_dir / SECRET_FILE).read_bytes().strip()) >= 32


def test_forms_are_csrf_safe(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url) as bare:  # no pre-session cookie: a cross-site form post
        answer = bare.post("/console/login", data={"key": KEYS["admin"], "csrf": "x"})
    assert answer.status_code == 403 and COOKIE + "=" not in answer.headers.get("set-cookie", "")
    _, other_site = sign_in(gw, "admin", origin="http://evil.example")
    assert other_site.status_code == 403
    client, _ = sign_in(gw, "admin")
    assert client.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in
    page = client.get("/console/").text
    out = client.post("/console/logout", data={"csrf": csrf_of(page)})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert client.get("/console/").headers["location"] == "/console/login"


def test_every_console_response_has_the_security_headers(gw: GatewayProcess) -> None:
    client, _ = sign_in(gw, "admin")
    for path in ("/console/login", "/console/", "/console/usage", "/console/static/console.js",
                 "/console/usage?limit=x", "/console/nothing", "/console/static/nothing.js"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = client.get("/console/").text
    assert "<script>" not in page and "onclick" not in page  # no inline script for the CSP to allow


@pytest.mark.parametrize(("query", "name"), [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("range=5y", "range"), ("bucket=minute", "bucket"),
    ("since=yesterday", "since"), ("since=2026-01-02&until=2026-01-01", "until"), ("status=maybe", "status"),
    ("key=a%27%3B%20DROP%20TABLE%20usage", "key"), ("sort=cost", "sort"), ("key=a&key=b", "key"),
])
def test_malformed_filters_are_a_400_page_naming_the_parameter(gw: GatewayProcess, query: str, name: str) -> None:
    client, _ = sign_in(gw, "admin")
    answer = client.get(f"/console/usage?{query}")
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert f"parameter `{name}`" in answer.text.replace("&#96;", "`")


def test_csv_download_is_exactly_the_filtered_rows(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, _ = sign_in(gw, "admin")
    answer = client.get("/console/usage.csv?key=alice&range=24h")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    expected = gw.usage_sql("SELECT request_id, served_model, cost_usd FROM usage WHERE key_id = 'alice' "
                            "ORDER BY started_at, request_id")
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in expected]
    assert set(sent["alice"]) == {r["request_id"] for r in rows}
    parquet = client.get("/console/usage.parquet?status=error")
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    assert list((gw.data_dir / "exports").glob("console-*")) or True  # served from there, removed later


def test_live_rate_counts_relayed_requests(gw: GatewayProcess, sent: dict[str, list[str]]) -> None:
    client, _ = sign_in(gw, "admin")
    first = client.get("/console/api/live").json()
    traffic_ids = sign_in(gw, "bob")  # unrelated console calls are not counted
    del traffic_ids
    from tests.console_support import chat

    chat(gw, "bob", "mock-small", 3)
    deadline = time.monotonic() + 5
    doc = client.get("/console/api/live").json()
    while doc["rps"] is None and time.monotonic() < deadline:
        doc = client.get("/console/api/live").json()
    assert doc["total"] >= first["total"] + 3
    assert doc["rps"] is not None and doc["rps"] > 0
    assert json.dumps(doc).count("tg-") == 0


def test_the_console_can_be_turned_off(tmp_path: Path, upstream: FakeUpstream) -> None:
    write_bundle(tmp_path / "policies", upstream)
    env = {"TOLLGATE_CONSOLE_ENABLED": "false"}
    with GatewayProcess(tmp_path / "policies", tmp_path / "data", env=env) as gw:
        assert httpx.get(f"{gw.url}/console/").status_code == 404
        assert httpx.get(f"{gw.url}/console/login").status_code == 404
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert not (tmp_path / "data" / SECRET_FILE).exists()


def test_a_failed_reload_shows_with_file_and_line(gw: GatewayProcess) -> None:
    client, _ = sign_in(gw, "admin")
    broken = gw.policies / "zz-broken.toml"
    broken.write_text('schema = 1\n\n[[key]]\nid = "x"\nhash = 12\n')
    try:
        deadline = time.monotonic() + 15
        page = client.get("/console/").text
        while 'id="policy-error"' not in page and time.monotonic() < deadline:
            time.sleep(0.2)
            page = client.get("/console/").text
        error = page[page.index('id="policy-error"'):page.index("</div>", page.index('id="policy-error"'))]
        assert "zz-broken.toml:" in error and "hash" in error
    finally:
        broken.unlink()
    deadline = time.monotonic() + 15
    while 'id="policy-ok"' not in client.get("/console/").text and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 'id="policy-ok"' in client.get("/console/").text


def test_the_page_cache_computes_once_for_views_at_the_same_time() -> None:
    import asyncio

    from gateway.console.cache import PageCache

    calls: list[int] = []
    release = asyncio.Event()

    async def compute() -> dict[str, object]:
        calls.append(1)
        await release.wait()
        return {"n": len(calls)}

    async def scenario() -> None:
        cache = PageCache(ttl_s=3600)
        views = [asyncio.ensure_future(cache.get(("page", "q"), compute)) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        assert [v["n"] for v in await asyncio.gather(*views)] == [1, 1, 1]
        assert (await cache.get(("page", "q"), compute))["n"] == 1  # within the TTL: kept
        assert (await cache.get(("page", "other"), compute))["n"] == 2  # another filter: computed
        cache.ttl_s = 0
        assert (await cache.get(("page", "q"), compute))["n"] == 3  # expired: computed again

    asyncio.run(scenario())
