"""Shared by the prepaid credit tests: a bundle with the mock provider, prepaid keys, an admin key."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any

import httpx

from gateway.cli import main
from tests.conftest import key_hash
from tests.gateway_process import GatewayProcess

ADMIN = "tg-credits-admin"
KEYS = ("alice", "bob", "carol", "dave", "post")  # prepaid (dave: by its group, carol too); postpaid
SECRETS = {k: f"tg-credits-{k}" for k in KEYS}

# The mock answers "Hello from the mock provider." (5 words: 5 completion tokens) and counts
# len(body) // 4 prompt tokens. At 1,000 USD per million tokens, a token costs 0.001 USD.
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = ["m", "slow"]
reply = "Hello from the mock provider."
latency_ms = {latency}

[price.m]
input = 1000.0
output = 1000.0

[price.slow]
input = 1000.0
output = 1000.0

[group.prepaid]
billing = "prepaid"
low_balance_usd = 1

[[admin_key]]
id = "ops"
hash = "{admin}"

[[key]]
id = "alice"
hash = "{alice}"
billing = "prepaid"

[[key]]
id = "bob"
hash = "{bob}"
billing = "prepaid"

[[key]]
id = "carol"
hash = "{carol}"
group = "prepaid"

[[key]]
id = "dave"
hash = "{dave}"
group = "prepaid"

[[key]]
id = "post"
hash = "{post}"
"""


def write_bundle(directory: Path, latency_ms: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {k: key_hash(s) for k, s in SECRETS.items()}
    (directory / "bundle.toml").write_text(BUNDLE.format(latency=latency_ms, admin=key_hash(ADMIN), **hashes))
    return directory


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}"}


def top_up(gw: GatewayProcess, key: str, usd: Any, reference: str | None = None, **extra: Any) -> httpx.Response:
    body = {"key": key, "usd": usd, "note": "test", **extra}
    if reference is not None:
        body["reference"] = reference
    return httpx.post(f"{gw.url}/admin/credits", json=body, headers=admin_headers(), timeout=30)


def balance(gw: GatewayProcess, key: str) -> dict[str, Any]:
    answer = httpx.get(f"{gw.url}/admin/credits/{key}", headers=admin_headers(), timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def chat(gw: GatewayProcess, key: str, model: str = "m", max_tokens: int = 5, **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {SECRETS[key]}"}, timeout=30)


def redeem(gw: GatewayProcess, key: str, code: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/dashboard/redeem", json={"code": code},
                      headers={"authorization": f"Bearer {SECRETS[key]}"}, timeout=30)


def tollgate(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in this process (a subprocess costs seconds of imports on a busy box)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(["tollgate", *args], code, out.getvalue(), err.getvalue())
