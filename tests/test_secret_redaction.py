"""Configured secrets never leave the gateway: not in a Midjourney answer or task that echoes the
proxy's secret, not in a rejected bundle's problems (log, /admin/policy, `tollgate check`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import key_hash
from tests.fakes.midjourney_proxy import FakeMidjourneyProxy
from tests.gateway_process import ROOT, GatewayProcess
from tests.mj_support import MJ_ADMIN, MJ_KEYS, write_mj_bundle
from tests.test_midjourney import proxies, until

Proxies = tuple[FakeMidjourneyProxy, FakeMidjourneyProxy]
__all__ = ["proxies"]  # the two fake proxies, shared with test_midjourney.py
ALICE = MJ_KEYS["alice"]
UPSTREAM_SECRET = "sk-ups-very-secret-4242"


@pytest.fixture(scope="module")
def gw(proxies: Proxies, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("mj-secrets")
    write_mj_bundle(root / "policies", *proxies)
    with GatewayProcess(root / "policies", root / "data", env={"TOLLGATE_MJ_POLL_S": "0.2"}) as gateway:
        yield gateway


def _post(gw: GatewayProcess, path: str, doc: Any) -> httpx.Response:
    return httpx.post(gw.url + path, json=doc, headers={"authorization": f"Bearer {ALICE}"}, timeout=10)


def test_midjourney_refusal_echoing_the_secret_is_masked(gw: GatewayProcess, proxies: Proxies) -> None:
    for p in proxies:
        p.reset()
        p.script_codes((24, f"banned; your mj-api-secret {p.secret} is noted"))
    r = _post(gw, "/mj/submit/imagine", {"prompt": "a fox"})
    assert r.status_code == 200 and r.json()["code"] == 24
    assert "mj-secret-" not in r.text and "[redacted]" in r.text


def test_midjourney_fail_reason_echoing_the_secret_is_masked(gw: GatewayProcess, proxies: Proxies) -> None:
    for p in proxies:
        p.reset()
    r = _post(gw, "/mj/submit/imagine", {"prompt": "a fox"})
    task_id = r.json()["result"]
    owner = next(p for p in proxies if task_id in p.tasks)
    owner.force_failure(task_id, f"upstream auth mj-api-secret={owner.secret} rejected")

    def failed() -> dict[str, Any] | None:
        doc: dict[str, Any] = httpx.get(f"{gw.url}/mj/task/{task_id}/fetch",
                                        headers={"authorization": f"Bearer {ALICE}"}, timeout=10).json()
        return doc if doc.get("status") == "FAILURE" else None

    doc = until(failed)
    assert "mj-secret-" not in str(doc) and "[redacted]" in doc["failReason"]


BAD_URL_BUNDLE = """
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["m"]

[[provider]]
id = "ups"
kind = "openai-compatible"
base_url = "${{UPSTREAM_TOKEN}}"
models = ["u"]

[[key]]
id = "k"
hash = "{h}"

[[admin_key]]
id = "root"
hash = "{admin}"
"""


def test_a_rejected_bundle_never_quotes_an_interpolated_secret(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    good = BAD_URL_BUNDLE.replace('base_url = "${{UPSTREAM_TOKEN}}"', 'base_url = "http://127.0.0.1:9/v1"')
    (policies / "bundle.toml").write_text(good.format(h=key_hash("tg-k"), admin=key_hash(MJ_ADMIN)))
    env = {"UPSTREAM_TOKEN": UPSTREAM_SECRET, "TOLLGATE_RELOAD_DEBOUNCE_MS": "50"}
    with GatewayProcess(policies, tmp_path / "data", env=env) as gw:
        (policies / "bundle.toml").write_text(BAD_URL_BUNDLE.format(h=key_hash("tg-k"), admin=key_hash(MJ_ADMIN)))

        def rejected() -> dict[str, Any] | None:
            doc: dict[str, Any] = httpx.get(f"{gw.url}/admin/policy", timeout=5,
                                            headers={"authorization": f"Bearer {MJ_ADMIN}"}).json()
            return doc if doc.get("last_error") else None

        doc = until(rejected)
        assert "must start with http" in str(doc) and UPSTREAM_SECRET not in str(doc)
        assert "${UPSTREAM_TOKEN}" in str(doc)  # the problem names the reference, not its value
        assert UPSTREAM_SECRET not in gw.log()
    check = subprocess.run([sys.executable, "-m", "gateway", "check", str(policies)], cwd=ROOT,
                           capture_output=True, text=True, env={"UPSTREAM_TOKEN": UPSTREAM_SECRET,
                                                                "PATH": "/usr/bin:/bin"})
    assert check.returncode == 1 and UPSTREAM_SECRET not in check.stdout + check.stderr
