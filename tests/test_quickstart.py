"""docs/quickstart.md, step by step, against fake upstreams standing in for OpenAI and Anthropic
(the bundle's base URLs come from OPENAI_BASE_URL / ANTHROPIC_BASE_URL, its secrets from the
environment and from a `${file:}` secret; `/run/secrets/` becomes a temporary directory)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import ROOT, GatewayProcess

DOC = (ROOT / "docs" / "quickstart.md").read_text()
FILES = re.findall(r"File `([^`]+)`[^\n]*\n\n```toml\n(.*?)```", DOC, re.S)
SH = re.findall(r"```sh\n(.*?)```", DOC, re.S)
PYTHON = re.findall(r"```python\n(.*?)```", DOC, re.S)


def sh_block(marker: str) -> str:
    (block,) = [b for b in SH if marker in b]
    return block


@pytest.fixture()
def fakes() -> Iterator[tuple[FakeUpstream, FakeAnthropic]]:
    openai, anthropic = FakeUpstream("openai").start(), FakeAnthropic("sk-ant-quickstart")
    anthropic.start()
    yield openai, anthropic
    openai.stop()
    anthropic.stop()


def json_values(text: str) -> list[dict[str, object]]:
    """The JSON documents curl printed back to back (no newline after each)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.strip()):
        value, end = decoder.raw_decode(text, at)
        values.append(value)
        at = end + len(text[end:]) - len(text[end:].lstrip())
    return values


def bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_quickstart(fakes: tuple[FakeUpstream, FakeAnthropic], tmp_path: Path) -> None:
    openai, anthropic = fakes
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "anthropic-key").write_text("sk-ant-quickstart\n")  # `echo ... | tee` adds the newline

    def write(path: str, text: str) -> None:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("/run/secrets/", f"{secrets}/"))

    first: dict[str, str] = {}
    for path, text in FILES:
        first.setdefault(path, text)
    for path, text in first.items():
        write(path, text)

    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OPENAI_API_KEY": "sk-openai-quickstart", "OPENAI_BASE_URL": openai.base_url,
           "ANTHROPIC_BASE_URL": anthropic.base_url}
    env.pop("TOLLGATE_DATA_DIR", None)

    # 3. a client key, appended to the bundle
    key = bash(sh_block("tollgate keys new") + 'echo "$TOLLGATE_KEY"\n', tmp_path, env).splitlines()[-1]
    assert key.startswith("tg-")
    env["TOLLGATE_KEY"] = key

    # 4. check, then serve (the test's own port)
    assert "tollgate check quickstart" in sh_block("tollgate serve")
    bash("tollgate check quickstart", tmp_path, env)
    data = tmp_path / "data"
    gateway_env = {k: env[k] for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")}
    with GatewayProcess(tmp_path / "quickstart", data, env=gateway_env) as gw:

        def here(text: str) -> str:
            return text.replace("http://127.0.0.1:8080", gw.url)

        # 5. the first requests: curl, then the SDKs
        out = bash(here(sh_block("curl -s http://127.0.0.1:8080/v1/chat")), tmp_path, env)
        replies = json_values(out)
        assert replies[0]["object"] == "chat.completion", replies
        assert replies[1]["type"] == "message", replies
        assert openai.received[-1].headers["Authorization"] == "Bearer sk-openai-quickstart"
        assert anthropic.received[-1].headers["x-api-key"] == "sk-ant-quickstart"
        (sdk,) = PYTHON
        done = subprocess.run([sys.executable, "-c", here(sdk)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

        # 6. the usage rows, from the directory the gateway was started in
        usage = sh_block("tollgate usage sql")
        deadline = time.monotonic() + 10
        while "(4 rows)" not in (rows := bash(usage, tmp_path, env)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "(4 rows)" in rows and "alice" in rows, rows

        # 7. a price change, hot-reloaded
        before = httpx.get(f"{gw.url}/admin/policy", headers={"authorization": "Bearer tg-admin-demo"}).json()
        changed = [text for path, text in FILES if path == "quickstart/prices.toml"][-1]
        write("quickstart/prices.toml", changed)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = json.loads(bash(here(sh_block("/admin/policy")), tmp_path, env))
            if status["revision"] != before["revision"]:
                break
            time.sleep(0.1)
        assert status["revision"] != before["revision"] and status["last_error"] is None
        bash(here(sh_block("curl -s http://127.0.0.1:8080/v1/chat")), tmp_path, env)
        cost = ("SELECT cost_usd / (prompt_tokens * 1e-6 + completion_tokens * 4e-6) AS rate FROM usage "
                "WHERE served_model = 'gpt-4.1-mini' ORDER BY started_at")
        rows = gw.usage_rows(cost, until=lambda r: len(r) >= 3)
        rates = [round(float(r["rate"]), 6) for r in rows]
        assert rates[0] == pytest.approx(0.40) and rates[-1] == pytest.approx(0.80), rates
