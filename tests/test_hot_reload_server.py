"""Hot reload under load: edits take effect within 2 s with no failed request; a broken edit
keeps the last good bundle serving and is reported by /admin/policy until fixed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

BUNDLE = """schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "up-a"
kind = "openai-compatible"
base_url = "{a}"
models = ["m-a"]

[[provider]]
id = "up-b"
kind = "openai-compatible"
base_url = "{b}"
models = ["m-b"]

[model.live]
targets = [{{ provider = "{provider}", model = "{model}" }}]

[[key]]
id = "k"
hash = "{key}"

[[admin_key]]
id = "admin"
hash = "{admin}"
"""


class Load:
    """Requests in a loop from a thread; records status and served model of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                r = c.post(
                    f"{self.url}/v1/chat/completions",
                    headers={"authorization": "Bearer tg-k"},
                    json={"model": "live", "messages": [{"role": "user", "content": "x"}]},
                )
                self.results.append((time.monotonic(), r.status_code, r.headers.get("x-tollgate-model", "")))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_model(self, model: str, since: float, timeout: float = 5.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, _, served in list(self.results):
                if t >= since and served == model:
                    return t - since
            time.sleep(0.01)
        raise AssertionError(f"{model} never served")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture()
def live(
    upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path
) -> Iterator[tuple[GatewayProcess, Path, dict[str, str]]]:
    a, b = upstreams
    fields = {"a": a.base_url, "b": b.base_url, "key": key_hash("tg-k"), "admin": key_hash("tg-adm")}
    bundle = tmp_path / "policies" / "bundle.toml"
    bundle.parent.mkdir()
    bundle.write_text(BUNDLE.format(provider="up-a", model="m-a", **fields))
    with GatewayProcess(bundle.parent, tmp_path / "data") as gw:
        yield gw, bundle, fields


def admin_policy(gw: GatewayProcess) -> dict[str, object]:
    return httpx.get(f"{gw.url}/admin/policy", headers={"authorization": "Bearer tg-adm"}).json()


def test_reload_under_load(live) -> None:
    gw, bundle, fields = live
    with Load(gw.url) as load:
        load.wait_model("m-a", 0)
        edited = time.monotonic()
        write_atomic(bundle, BUNDLE.format(provider="up-b", model="m-b", **fields))
        latency = load.wait_model("m-b", edited)
        assert latency < 2.0
        print(f"reload latency {latency * 1000:.0f} ms")

        broken = time.monotonic()
        write_atomic(bundle, BUNDLE.format(provider="up-zz", model="m-b", **fields))
        deadline = time.monotonic() + 5
        while not admin_policy(gw)["last_error"] and time.monotonic() < deadline:
            time.sleep(0.05)
        status = admin_policy(gw)
        assert status["last_error"] == [
            f'{bundle}:18: model.live.targets[0].provider: unknown provider "up-zz"'
        ]
        served_after_break = {m for t, _, m in list(load.results) if t > broken}
        assert served_after_break == {"m-b"}  # the last good bundle keeps serving

        fixed = time.monotonic()
        write_atomic(bundle, BUNDLE.format(provider="up-a", model="m-a", **fields))
        load.wait_model("m-a", fixed)
    assert admin_policy(gw)["last_error"] is None
    statuses = {s for _, s, _ in load.results}
    assert statuses == {200}, f"failed requests during reloads: {statuses}"
    assert len(load.results) > 20


def test_sighup_respawn_keeps_last_good_bundle(live) -> None:
    gw, bundle, fields = live
    write_atomic(bundle, "schema = 1\n[[provider]\n")  # a syntax error
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)  # the workers are replaced
    deadline = time.monotonic() + 20
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            status = admin_policy(gw)
            if status.get("last_error") and status.get("reloads") == 0:
                break  # a fresh worker reporting the error at start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"authorization": "Bearer tg-k"},
        json={"model": "live", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 200 and r.headers["x-tollgate-model"] == "m-a"
    assert gw.proc.poll() is None  # the serving process is still there (SIGHUP does not stop it)
    assert "TOML syntax error" in str(status.get("last_error"))
