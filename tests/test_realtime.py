"""The Realtime API over WebSocket through a real gateway process (granian's RSGI WebSockets) to a
fake realtime upstream (tests/fakes/realtime_upstream.py), with the official openai SDK's realtime
client and the `websockets` library: relay both ways, billing per response, refusals before the
upgrade, closes both ways, limits and budgets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import key_hash
from tests.fakes.realtime_upstream import FakeRealtime
from tests.fakes.threaded import ThreadedApp, wait_for
from tests.gateway_process import ROOT, GatewayProcess

MAX_FRAME = 65536
# USAGE of the fake, priced below: 20 uncached text in x 4 + 20 cached x 0.4 + 60 audio in x 32
# + 10 text out x 16 + 40 audio out x 64 = 4728 USD per million
COST = Decimal("0.004728")

BUNDLE = """
schema = 1

[[provider]]
id = "oai"
kind = "openai"
base_url = "{base}"
api_keys = ["sk-revoked", "sk-rt"]
models = ["gpt-realtime"]

[[provider]]
id = "az"
kind = "azure"
base_url = "{root}"
api_keys = ["az-rt"]
models = ["gpt-az"]
deployments = {{ "gpt-az" = "rt-deploy" }}
api_version = "2025-04-01-preview"

[[provider]]
id = "oai-http"
kind = "openai"
base_url = "{secrets}"
api_keys = ["sk-secrets"]
models = ["gpt-realtime-mini"]

[price."gpt-realtime-mini"]
input = 1.0
output = 1.0

[[provider]]
id = "chat-only"
kind = "anthropic"
base_url = "{root}"
api_keys = ["sk-ant"]
models = ["claude-x"]

[price."gpt-realtime"]
input = 4.0
cached_input = 0.4
output = 16.0
audio_input = 32.0
audio_output = 64.0

[price."gpt-az"]
input = 1.0
output = 1.0

[price."claude-x"]
input = 1.0
output = 1.0

[[key]]
id = "voice"
hash = "{voice}"

[[key]]
id = "textonly"
hash = "{textonly}"
models = ["claude-*"]

[[key]]
id = "single"
hash = "{single}"
limits = {{ concurrency = 1 }}

[[key]]
id = "budgeted"
hash = "{budgeted}"
budget = {{ usd = 0.005, period = "month" }}

[[key]]
id = "prepaid"
hash = "{prepaid}"
billing = "prepaid"
"""
KEYS = {"voice": "tg-voice", "textonly": "tg-text", "single": "tg-single", "budgeted": "tg-budget",
        "prepaid": "tg-prepaid"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeRealtime]:
    up = FakeRealtime(keys=("sk-rt", "az-rt")).start()
    yield up
    up.stop()


class SecretsUpstream:
    """OpenAI's POST /v1/realtime/client_secrets, faked: it mints `ek_test` and keeps the requests."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.app = ThreadedApp(self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.headers.get("authorization", ""), await request.json()))
        return web.json_response({"value": "ek_test", "expires_at": 1893456000,
                                  "session": {"type": "realtime", "model": "gpt-realtime-mini"}})


@pytest.fixture(scope="module")
def secrets_upstream() -> Iterator[SecretsUpstream]:
    up = SecretsUpstream()
    up.app.start()
    yield up
    up.app.stop()


@pytest.fixture(scope="module")
def gateway(upstream: FakeRealtime, secrets_upstream: SecretsUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("realtime")
    policies = root / "policies"
    policies.mkdir()
    (policies / "bundle.toml").write_text(BUNDLE.format(
        base=upstream.base_url, root=upstream.root_url,
        secrets=f"http://127.0.0.1:{secrets_upstream.app.port}/v1", **{k: key_hash(v) for k, v in KEYS.items()}))
    env = {"TOLLGATE_REALTIME_MAX_FRAME_BYTES": str(MAX_FRAME)}
    with GatewayProcess(policies, root / "data", env=env) as gw:
        yield gw


def ws_url(gw: GatewayProcess, model: str = "gpt-realtime") -> str:
    return f"ws://127.0.0.1:{gw.port}/v1/realtime?model={model}"


def connect(gw: GatewayProcess, key: str = "tg-voice", model: str = "gpt-realtime") -> Any:
    return websockets.connect(ws_url(gw, model), additional_headers={"authorization": f"Bearer {key}"},
                              max_size=None)


async def until_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next server event of type `kind` (others skipped), within a deadline."""
    async with asyncio.timeout(10):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == kind:
                return event


def rows(gw: GatewayProcess, where: str, count: int) -> list[dict[str, Any]]:
    return rows_of(gw, "realtime", where, count)


def rows_of(gw: GatewayProcess, endpoint: str, where: str, count: int) -> list[dict[str, Any]]:
    sql = ("select request_id, session_id, key_id, status, error_type, prompt_tokens, completion_tokens, "
           "cached_tokens, cost_usd, provider, served_model, endpoint "
           f"from usage where endpoint = '{endpoint}' and {where} order by finished_at")
    return gw.usage_rows(sql, until=lambda r: len(r) >= count)


def test_sdk_session_two_responses_two_rows(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="tg-voice", max_retries=0)
        done = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            for _ in range(2):
                await conn.response.create()
                async for event in conn:
                    if event.type == "response.done":
                        done.append(event.response.id or "")
                        break
        return done

    before = len(upstream.conns)
    done = asyncio.run(session())
    assert len(done) == 2
    conn = upstream.conns[before]
    # the provider's key reached the upstream (after the revoked one was refused), never the client's
    assert conn.headers["authorization"] == "Bearer sk-rt"
    assert "tg-voice" not in json.dumps(conn.headers)
    assert conn.query["model"] == ["gpt-realtime"]
    found = rows(gateway, "key_id = 'voice'", 2)
    assert len(found) == 2
    assert found[0]["session_id"] == found[1]["session_id"] and found[0]["session_id"].startswith("rts_")
    assert found[0]["request_id"] != found[1]["request_id"]
    for row in found:
        assert (row["status"], row["error_type"], row["provider"], row["served_model"]) == (
            200, None, "oai", "gpt-realtime")
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (100, 50, 20)
        assert Decimal(str(row["cost_usd"])) == COST


def test_frames_relayed_as_they_are(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> tuple[bytes, dict[str, Any]]:
        # the browser way: the key as a subprotocol
        async with websockets.connect(ws_url(gateway), subprotocols=[  # type: ignore[list-item]
                "realtime", "openai-insecure-api-key.tg-voice"]) as ws:
            await until_type(ws, "session.created")
            await ws.send(b"\x00\x01binary\xff")
            echoed = await ws.recv()
            await ws.send('{"type": "session.update", oops')  # not JSON: forwarded, the upstream judges
            error = await until_type(ws, "error")
            return echoed, error  # type: ignore[return-value]

    before = len(upstream.conns)
    echoed, error = asyncio.run(session())
    assert echoed == b"\x00\x01binary\xff"
    assert error["error"]["code"] == "invalid_json"  # the upstream's own error event
    received = upstream.conns[before].received
    assert received == [b"\x00\x01binary\xff", '{"type": "session.update", oops']


def test_pings_are_answered_on_both_hops(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> None:
        async with connect(gateway) as ws:
            await until_type(ws, "session.created")
            pong = await ws.ping()
            async with asyncio.timeout(10):
                await pong  # granian answers the client's ping
            assert upstream.conns[-1].ponged.wait(10)  # the gateway's client answered the upstream's

    asyncio.run(session())


def test_client_gone_mid_response_closes_upstream(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> None:
        async with connect(gateway) as ws:
            await ws.send(json.dumps({"type": "response.create"}))
            await until_type(ws, "response.done")  # one answered response
            await ws.send(json.dumps({"type": "response.create", "response": {"instructions": "hang"}}))
            await until_type(ws, "response.output_text.delta")
        # the client leaves in the middle of the second response

    before = len(upstream.conns)
    billed = len(gateway.usage_sql("select 1 from usage where key_id = 'voice' and status = 200"))
    asyncio.run(session())
    conn = upstream.conns[before]
    assert conn.closed.wait(10), "the gateway did not close the upstream"
    assert conn.close_code == 1000
    # the gateway cancelled the cut response upstream before closing, and bills what it used
    assert json.loads(conn.received[-1]) == {"type": "response.cancel"}
    answered = rows(gateway, "key_id = 'voice' and status = 200", billed + 2)
    assert len(answered) == billed + 2
    finished, cut = answered[-2:]
    assert finished["session_id"] == cut["session_id"]
    assert (finished["prompt_tokens"], finished["error_type"]) == (100, None)
    assert (cut["prompt_tokens"], cut["completion_tokens"], cut["error_type"]) == (20, 10, "response_cancelled")


def test_upstream_close_reaches_the_client(gateway: GatewayProcess) -> None:
    async def session() -> tuple[dict[str, Any], bool]:
        async with connect(gateway) as ws:
            await ws.send(json.dumps({"type": "response.create",
                                      "response": {"instructions": "close:1011:model crashed"}}))
            event = await until_type(ws, "error")
            try:
                async with asyncio.timeout(10):
                    await ws.recv()
            except ConnectionClosed:
                return event, True
            return event, False

    event, closed = asyncio.run(session())
    assert event["error"]["code"] == "upstream_closed"
    assert "code 1011: model crashed" in event["error"]["message"]
    assert closed


@pytest.mark.parametrize(("key", "model", "status"), [
    ("tg-text", "gpt-realtime", 403),  # the key's allow-list
    ("tg-wrong", "gpt-realtime", 401),
    ("tg-voice", "no-such-model", 404),
    ("tg-voice", "", 400),
    ("tg-voice", "claude-x", 502),  # a provider kind without a Realtime API
])
def test_refused_before_the_upgrade(gateway: GatewayProcess, upstream: FakeRealtime,
                                    key: str, model: str, status: int) -> None:
    async def attempt() -> int:
        try:
            async with connect(gateway, key, model):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    before = len(upstream.conns)
    assert asyncio.run(attempt()) == status
    assert len(upstream.conns) == before  # no upstream session was opened


def test_refused_key_is_recorded(gateway: GatewayProcess) -> None:
    async def attempt() -> None:
        with pytest.raises(InvalidStatus):
            async with connect(gateway, "tg-text"):
                pass

    asyncio.run(attempt())
    found = rows(gateway, "key_id = 'textonly'", 1)
    assert found[0]["status"] == 403 and found[0]["error_type"] == "model_not_allowed"


def test_plain_get_is_told_to_upgrade(gateway: GatewayProcess) -> None:
    r = httpx.get(f"{gateway.url}/v1/realtime?model=gpt-realtime", headers={"authorization": "Bearer tg-voice"})
    assert r.status_code == 426
    err = r.json()["error"]
    assert err["code"] == "websocket_required" and "ws(s)://" in err["message"]
    assert r.headers["upgrade"] == "websocket"


def test_other_websocket_paths_are_refused(gateway: GatewayProcess) -> None:
    async def attempt() -> int:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/v1/chat/completions"):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(attempt()) == 404


def test_oversized_client_frame_ends_the_session(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> dict[str, Any]:
        async with connect(gateway) as ws:
            await until_type(ws, "session.created")
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * MAX_FRAME}))
            return await until_type(ws, "error")

    before = len(upstream.conns)
    event = asyncio.run(session())
    assert event["error"]["code"] == "frame_too_large"
    conn = upstream.conns[before]
    assert conn.closed.wait(10) and conn.close_code == 1009
    assert conn.received == []  # the oversized event never reached the upstream


def test_oversized_upstream_frame_ends_the_session(gateway: GatewayProcess) -> None:
    async def session() -> dict[str, Any]:
        async with connect(gateway) as ws:
            await ws.send(json.dumps({"type": "response.create", "response": {"instructions": f"big:{MAX_FRAME}"}}))
            return await until_type(ws, "error")

    assert asyncio.run(session())["error"]["code"] == "frame_too_large"


def test_azure_deployment_url_and_key(gateway: GatewayProcess, upstream: FakeRealtime) -> None:
    async def session() -> None:
        async with connect(gateway, model="gpt-az") as ws:
            await ws.send(json.dumps({"type": "response.create"}))
            await until_type(ws, "response.done")

    before = len(upstream.conns)
    asyncio.run(session())
    conn = upstream.conns[before]
    assert conn.path == "/openai/realtime"
    assert conn.query["api-version"] == ["2025-04-01-preview"] and conn.query["deployment"] == ["rt-deploy"]
    assert conn.headers["api-key"] == "az-rt" and "authorization" not in conn.headers


def test_an_open_session_holds_a_concurrency_slot(gateway: GatewayProcess) -> None:
    async def attempt() -> int:
        try:
            async with connect(gateway, "tg-single") as ws:
                await until_type(ws, "session.created")
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    async def sessions() -> tuple[int, int]:
        async with connect(gateway, "tg-single") as first:
            await until_type(first, "session.created")
            second = await attempt()
        return second, await attempt()

    second, after = asyncio.run(sessions())
    assert second == 429
    assert after == 101 or wait_for(lambda: asyncio.run(attempt()) == 101, 10)


async def responses_until_error(gw: GatewayProcess, key: str, most: int = 4) -> tuple[int, dict[str, Any]]:
    """response.create after response.create: how many were answered before an `error` event."""
    async with connect(gw, key) as ws:
        for done in range(most):
            with contextlib.suppress(ConnectionClosed):  # closed already: its last events are still read
                await ws.send(json.dumps({"type": "response.create"}))
            event: dict[str, Any] = {}
            while event.get("type") not in ("response.done", "error"):
                event = json.loads(await ws.recv())
            if event["type"] == "error":
                return done, event
        return most, {}


def status_at_connect(gw: GatewayProcess, key: str) -> int:
    async def attempt() -> int:
        try:
            async with connect(gw, key):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    return asyncio.run(attempt())


def test_budget_spent_mid_session_ends_it_after_the_response(gateway: GatewayProcess) -> None:
    done, event = asyncio.run(responses_until_error(gateway, "tg-budget"))
    assert done == 2  # 0.004728 < 0.005 after the first; the second spends it
    assert event["error"]["code"] == "budget_exceeded"
    assert status_at_connect(gateway, "tg-budget") == 429
    assert len(rows(gateway, "key_id = 'budgeted' and status = 200", 2)) == 2


def test_prepaid_balance_spent_mid_session(gateway: GatewayProcess) -> None:
    assert status_at_connect(gateway, "tg-prepaid") == 402  # no credits yet
    subprocess.run([sys.executable, "-m", "gateway", "credits", "add", "prepaid", "0.006", "--note", "test",
                    "--data-dir", str(gateway.data_dir), "--policies", str(gateway.policies)], cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert wait_for(lambda: status_at_connect(gateway, "tg-prepaid") == 101, 20)
    done, event = asyncio.run(responses_until_error(gateway, "tg-prepaid"))
    assert done == 2  # 0.006 of credits: the second response (0.009456 in all) overdraws it
    assert event["error"]["code"] == "budget_exceeded"
    assert status_at_connect(gateway, "tg-prepaid") == 402


def test_ledger_has_the_session_column(gateway: GatewayProcess) -> None:
    names = {r["column_name"] for r in gateway.usage_sql(
        "select column_name from information_schema.columns where table_name = 'usage'")}
    assert "session_id" in names


def test_log_has_no_provider_key(gateway: GatewayProcess) -> None:
    log = gateway.log()
    assert "sk-rt" not in log and "az-rt" not in log and "tg-voice" not in log


def test_client_secrets_minted_with_the_provider_key(gateway: GatewayProcess,
                                                     secrets_upstream: SecretsUpstream) -> None:
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="tg-voice", max_retries=0)
    secret = sdk.realtime.client_secrets.create(session={"type": "realtime", "model": "gpt-realtime-mini"})
    assert secret.value == "ek_test"
    auth, body = secrets_upstream.seen[-1]
    assert auth == "Bearer sk-secrets" and body["session"]["model"] == "gpt-realtime-mini"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="tg-text", max_retries=0).realtime.client_secrets.create(
            session={"type": "realtime", "model": "gpt-realtime-mini"})
    assert refused.value.code == "model_not_allowed"
    no_model = httpx.post(f"{gateway.url}/v1/realtime/client_secrets", json={"session": {"type": "realtime"}},
                          headers={"authorization": "Bearer tg-voice"})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    minted = rows_of(gateway, "realtime/client_secrets", "key_id = 'voice' and status = 200", 1)
    assert minted[0]["cost_usd"] is None and minted[0]["prompt_tokens"] == 0
