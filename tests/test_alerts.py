"""Alerts: `[[alert]]` entries compiled from a real bundle, delivered over loopback HTTP to a
webhook receiver through the dispatcher and the real upstream client: signature, Slack body,
CEL `when`, deduplication, retries and giving up (500, unreachable, slow), the attempt log,
`tollgate alerts test`, and no secret anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.dispatcher import Dispatcher
from gateway.alerts.events import Event, key_event
from gateway.alerts.log import AlertLog, Dedup, read_log
from gateway.config import BundleError, Snapshot, load_snapshot
from gateway.providers.transport.h1client import H1Client
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.gateway_process import ROOT, free_port

SECRET = "whsec-alert-secret-7f3a"
TOKEN = "hook-token-abcdef123456"
ENV = {"HOOK_SECRET": SECRET, "HOOK_TOKEN": TOKEN}

BUNDLE = """
schema = 1

[[provider]]
id = "mock"
kind = "mock"
models = ["m"]

[price.m]
input = 1.0

[[alert]]
id = "signed"
on = "key_benched"
url = "{url}"
secret = "${{HOOK_SECRET}}"
headers = {{ "authorization" = "Bearer ${{HOOK_TOKEN}}", "x-team" = "ops" }}
attempts = 3
backoff_s = 0.05
timeout_s = 0.5
dedup_s = 60

[[alert]]
id = "slack"
on = "key_restored"
url = "{url}"
format = "slack"
text = "key {{key}} of {{provider}} is back ({{reason}})"
dedup_s = 0

[[alert]]
id = "only-openai"
on = "breaker_open"
url = "{url}"
when = 'event.provider == "openai" && event.failures >= 3'
dedup_s = 0
attempts = 1
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def bundle(tmp_path: Path, url: str, text: str = BUNDLE) -> Path:
    d = tmp_path / "policies"
    d.mkdir(exist_ok=True)
    (d / "bundle.toml").write_text(text.format(url=url))
    return d


def snapshot(tmp_path: Path, url: str) -> Snapshot:
    return load_snapshot(bundle(tmp_path, url), env=ENV)


def benched(provider: str = "openai", index: int = 0) -> Event:
    return key_event("key_benched", provider, index, "sk-...a1b2", 401, "Incorrect API key provided: [redacted]",
                     None)


async def dispatch(snap: Snapshot, data_dir: Path, *events: Event) -> Dispatcher:
    """Dispatch the events and wait for every delivery they start to finish."""
    client = H1Client(4)
    d = Dispatcher(lambda: snap.alerts, lambda: snap.redactor, client, AlertLog(data_dir), Dedup(data_dir))
    tasks = [t for e in events for t in d.dispatch(e)]
    await asyncio.gather(*tasks)
    await client.aclose()
    return d


def no_secret(text: str) -> None:
    assert SECRET not in text and TOKEN not in text


def test_signed_delivery_with_headers_and_event_fields(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset()
    snap = snapshot(tmp_path, receiver.url)
    asyncio.run(dispatch(snap, tmp_path / "data", benched()))
    [d] = receiver.deliveries
    assert d.signed_by(SECRET)
    assert not d.signed_by("another-secret")
    assert d.headers["authorization"] == f"Bearer {TOKEN}" and d.headers["x-team"] == "ops"
    doc = d.json()
    assert doc["alert"] == "signed" and doc["event"] == "key_benched"
    assert doc["provider"] == "openai" and doc["key"] == "sk-...a1b2" and doc["status"] == 401
    assert "key #0 (sk-...a1b2) benched" in doc["summary"]
    no_secret(d.body.decode())
    [row] = read_log(tmp_path / "data")
    assert row["outcome"] == "delivered" and row["status"] == 200 and row["attempt"] == 1


def test_slack_body_from_the_text_template(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset()
    snap = snapshot(tmp_path, receiver.url)
    event = key_event("key_restored", "openai", 1, "sk-...c3d4", 401, "provider test passed", None)
    asyncio.run(dispatch(snap, tmp_path / "data", event))
    [d] = receiver.deliveries
    assert d.json() == {"text": "key sk-...c3d4 of openai is back (provider test passed)"}
    assert "x-tollgate-signature" not in d.headers  # no secret: no signature


def test_when_filters_events(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset()
    snap = snapshot(tmp_path, receiver.url)
    fields = {"failures": 3, "window_s": 30.0, "cooldown_s": 15.0}
    events = [Event("breaker_open", {"provider": "anthropic", **fields}, "anthropic"),
              Event("breaker_open", {"provider": "openai", **fields}, "openai")]
    asyncio.run(dispatch(snap, tmp_path / "data", *events))
    assert [d.json()["provider"] for d in receiver.deliveries] == ["openai"]


def test_deduplicated_per_subject_and_window_across_dispatchers(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset()
    snap = snapshot(tmp_path, receiver.url)
    data = tmp_path / "data"
    asyncio.run(dispatch(snap, data, benched(), benched(), benched(index=1)))
    asyncio.run(dispatch(snap, data, benched()))  # another worker: same data dir, same window
    subjects = sorted(d.json()["key_index"] for d in receiver.deliveries)
    assert subjects == [0, 1]


def test_webhook_answering_500_is_retried_then_given_up_and_logged(tmp_path: Path,
                                                                  receiver: WebhookReceiver) -> None:
    receiver.reset(status=500)
    snap = snapshot(tmp_path, receiver.url)
    d = asyncio.run(dispatch(snap, tmp_path / "data", benched()))
    assert receiver.attempts == 3 and d.failed == 1 and d.delivered == 0
    rows = read_log(tmp_path / "data")
    assert [(r["attempt"], r["status"], r["outcome"]) for r in rows] == [
        (1, 500, "retrying"), (2, 500, "retrying"), (3, 500, "failed")]
    no_secret((tmp_path / "data" / "alerts.jsonl").read_text())


def test_unreachable_webhook_gives_up(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    snap = snapshot(tmp_path, dead)
    d = asyncio.run(dispatch(snap, tmp_path / "data", benched()))
    rows = read_log(tmp_path / "data")
    assert d.failed == 1 and [r["outcome"] for r in rows] == ["retrying", "retrying", "failed"]
    assert all("connection failed" in r["error"] for r in rows)


def test_slow_webhook_times_out_per_attempt(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset(delay=10.0)  # the alert allows 0.5 s an attempt
    snap = snapshot(tmp_path, receiver.url)
    d = asyncio.run(dispatch(snap, tmp_path / "data", benched()))
    rows = read_log(tmp_path / "data")
    assert d.failed == 1 and receiver.deliveries == []
    assert [r["error"] for r in rows] == ["timed out after 0.5s"] * 3


def test_emit_never_waits_for_a_slow_webhook(tmp_path: Path, receiver: WebhookReceiver) -> None:
    """The request path only queues: emit returns before any delivery starts, and the event
    loop keeps running other work while a delivery hangs."""
    receiver.reset(delay=10.0)
    snap = snapshot(tmp_path, receiver.url)

    async def scenario() -> tuple[int, int]:
        client = H1Client(4)
        d = Dispatcher(lambda: snap.alerts, lambda: snap.redactor, client, AlertLog(None), Dedup(None))
        d.start()
        d.emit(benched())
        queued = d.queue.qsize()
        ticks = 0
        while receiver.attempts == 0 or ticks < 20:  # the loop turns while the webhook hangs
            await asyncio.sleep(0.01)
            ticks += 1
        await d.stop()
        await client.aclose()
        return queued, ticks

    queued, ticks = asyncio.run(scenario())
    assert queued == 1 and ticks >= 20


@pytest.mark.parametrize(("alert", "message"), [
    ('on = "key_benched"\nurl = "http://127.0.0.1:1/h"\nwhen = "event.nope == 1"', "unknown field `event.nope`"),
    ('on = "key_benched"\nurl = "http://127.0.0.1:1/h"\nwhen = "event.status =="', "CEL syntax error"),
    ('on = "key_benched"\nurl = "http://127.0.0.1:1/h"\ntext = "{budget_usd}"', "key_benched has no field {budget_usd}"),
    ('on = "key_benched"\nurl = "ftp://127.0.0.1/h"', "must start with http:// or https://"),
    ('on = "disk_full"\nurl = "http://127.0.0.1:1/h"', "disk_full"),
    ('on = "key_benched"\nurl = "${NO_SUCH_HOOK_URL}"', "NO_SUCH_HOOK_URL"),
])
def test_check_rejects_bad_alerts(tmp_path: Path, alert: str, message: str) -> None:
    text = 'schema = 1\n[[provider]]\nid = "mock"\nkind = "mock"\n\n[[alert]]\nid = "a"\n' + alert + "\n"
    d = tmp_path / "bad"
    d.mkdir()
    (d / "b.toml").write_text(text)
    with pytest.raises(BundleError) as caught:
        load_snapshot(d, env={})
    assert message in str(caught.value)


def test_check_command_reports_a_bad_alert_without_a_traceback(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "b.toml").write_text('schema = 1\n[[alert]]\nid = "a"\non = "key_benched"\nurl = "http://127.0.0.1:1/h"\n'
                              'when = "event.nope == 1"\n')
    done = subprocess.run([sys.executable, "-m", "gateway", "check", str(d)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "b.toml:6: alert[0].when" in done.stdout
    assert "Traceback" not in done.stderr


def test_alerts_test_command_sends_a_signed_sample(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.reset()
    policies = bundle(tmp_path, receiver.url)
    env = {"PATH": "/usr/bin:/bin", **ENV}
    done = subprocess.run([sys.executable, "-m", "gateway", "alerts", "test", "signed", "--policies", str(policies),
                           "--data-dir", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "attempt 1/3: delivered" in done.stdout and "delivered" in done.stdout.splitlines()[-1]
    [d] = receiver.deliveries
    assert d.signed_by(SECRET) and d.json()["event"] == "key_benched"
    no_secret(done.stdout + done.stderr)
    assert json.loads((tmp_path / "data" / "alerts.jsonl").read_text())["outcome"] == "delivered"

    receiver.reset(status=503)
    done = subprocess.run([sys.executable, "-m", "gateway", "alerts", "test", "signed", "--policies", str(policies)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "NOT delivered" in done.stdout and "HTTP 503" in done.stdout
    no_secret(done.stdout + done.stderr)

    done = subprocess.run([sys.executable, "-m", "gateway", "alerts", "test", "nope", "--policies", str(policies)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "no alert `nope`" in done.stderr


def test_dispatcher_survives_a_full_queue(tmp_path: Path) -> None:
    snap = snapshot(tmp_path, "http://127.0.0.1:1/h")

    async def flood() -> Dispatcher:
        d = Dispatcher(lambda: snap.alerts, lambda: snap.redactor, H1Client(1), AlertLog(None), Dedup(None))
        for _ in range(d.queue.maxsize + 5):
            d.emit(benched())
        return d

    d = asyncio.run(flood())
    assert d.dropped == 5
