"""Secrets that reload: `${file:/path}` references and `--env-file`, re-read on every reload, so
a rotated provider key takes effect with no restart; the secret itself never shows in
`/admin/policy`, the log or an error."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.config import BundleError, load_snapshot
from gateway.config.envsubst import BadReference, MissingFile, interpolate, read_env_file
from tests.conftest import key_hash
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess

BUNDLE = """schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "up"
kind = "openai"
base_url = "{base_url}"
api_keys = ["{key_ref}"]
models = ["gpt-test"]

[[key]]
id = "k"
hash = "{key}"

[[admin_key]]
id = "admin"
hash = "{admin}"
"""

OLD, NEW, NEWER = "sk-old-secret-0001", "sk-new-secret-0002", "sk-newer-secret-0003"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def bundle(directory: Path, base_url: str, key_ref: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = BUNDLE.format(base_url=base_url, key_ref=key_ref, key=key_hash("tg-k"), admin=key_hash("tg-adm"))
    (directory / "bundle.toml").write_text(text)
    return directory


# interpolation -----------------------------------------------------------------------------------


def test_file_reference_strips_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("sk-abc\n")
    assert interpolate(f"${{file:{secret}}}", {}) == "sk-abc"
    secret.write_text("sk-abc\r\n")
    assert interpolate(f"Bearer ${{file:{secret}}} ${{X:-d}}", {}) == "Bearer sk-abc d"


def test_file_reference_problems(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match=f"file {tmp_path}/nope not found"):
        interpolate(f"${{file:{tmp_path}/nope}}", {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(MissingFile, match="is empty"):
        interpolate(f"${{file:{tmp_path}/empty}}", {})
    for bad in ("${file:relative/path}", "${file:}", "${file:/a"):
        with pytest.raises(BadReference):
            interpolate(bad, {})
    assert interpolate(f"${{file:{tmp_path}/nope}}", {}, allow_missing=True) == f"<file:{tmp_path}/nope>"


def test_env_file_format(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\n\nexport A=1\nB = 'two words'\nC=\"x#y\"\nD=plain # note\n")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "x#y", "D": "plain"}


def test_missing_file_is_a_located_problem_and_values_are_masked(tmp_path: Path) -> None:
    missing = tmp_path / "secrets" / "absent"
    directory = bundle(tmp_path / "p", "https://api.example.com/v1", f"${{file:{missing}}}")
    with pytest.raises(BundleError) as info:
        load_snapshot(directory, env={})
    assert [str(p) for p in info.value.problems] == [
        f"{directory}/bundle.toml:9: provider[0].api_keys[0]: file {missing} not found"
    ]
    # A value read from a file ends up in a problem's message: masked like a ${VAR} value.
    url = tmp_path / "url"
    url.write_text("ftp://secret-host-value\n")
    bundle(directory, f"${{file:{url}}}", "sk-x")
    with pytest.raises(BundleError) as info:
        load_snapshot(directory, env={})
    assert "secret-host-value" not in str(info.value)


def test_check_with_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = bundle(tmp_path / "p", "https://api.example.com/v1", "${ROTATED_KEY}")
    env_file = tmp_path / "gateway.env"
    assert main(["check", str(directory)]) == 1
    assert "environment variable ROTATED_KEY is not set" in capsys.readouterr().out
    assert main(["check", str(directory), "--env-file", str(env_file)]) == 1
    assert f"{env_file}: env file not found" in capsys.readouterr().out
    env_file.write_text("ROTATED_KEY=sk-from-env-file\n")
    assert main(["check", str(directory), "--env-file", str(env_file)]) == 0
    env_file.write_text("not a line\n")
    assert main(["check", str(directory), "--env-file", str(env_file)]) == 1
    assert f"{env_file}:1: expected NAME=value" in capsys.readouterr().out


# a real gateway ----------------------------------------------------------------------------------


@pytest.fixture()
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream("openai").start()
    yield up
    up.stop()


def chat(gw: GatewayProcess) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": "Bearer tg-k"},
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)


def admin_policy(gw: GatewayProcess) -> httpx.Response:
    return httpx.get(f"{gw.url}/admin/policy", headers={"authorization": "Bearer tg-adm"}, timeout=10)


def wait_for_key(gw: GatewayProcess, upstream: FakeUpstream, key: str, timeout: float = 10.0) -> httpx.Response:
    """Requests until one reaches the upstream with `key` (the reload is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        before = len(upstream.received)
        reply = chat(gw)
        sent = [r.headers.get("Authorization") for r in upstream.received[before:]]
        if f"Bearer {key}" in sent and reply.status_code == 200:
            return reply
        if time.monotonic() > deadline:
            raise AssertionError(f"{key[:6]}... never reached the upstream: {reply.status_code} {reply.text}")
        time.sleep(0.1)


def assert_never_shown(gw: GatewayProcess, *secrets: str) -> None:
    policy = admin_policy(gw)
    assert policy.status_code == 200
    for secret in secrets:
        assert secret not in policy.text
        assert secret not in gw.log()


def test_rotated_secret_file_reloads_without_restart(upstream: FakeUpstream, tmp_path: Path) -> None:
    secrets_dir = tmp_path / "run-secrets"  # outside the bundle, like a mounted secret volume
    secrets_dir.mkdir()
    key_file = secrets_dir / "openai-key"
    key_file.write_text(OLD + "\n")
    directory = bundle(tmp_path / "policies", upstream.base_url, f"${{file:{key_file}}}")
    with GatewayProcess(directory, tmp_path / "data") as gw:
        wait_for_key(gw, upstream, OLD)
        pid = gw.proc.pid if gw.proc else None

        upstream.reject_keys.add(OLD)  # the provider revoked the old key
        write_atomic(key_file, NEW + "\n")  # the orchestrator rotated the mounted file
        wait_for_key(gw, upstream, NEW)
        assert gw.proc is not None and gw.proc.pid == pid and gw.proc.poll() is None

        # An upstream 401 that quotes the key: the client never sees it.
        upstream.reject_keys.add(NEW)
        refused = chat(gw)
        assert refused.status_code >= 400
        assert NEW not in refused.text and OLD not in refused.text

        # A missing secret file: reported, the last good bundle keeps serving.
        key_file.unlink()
        deadline = time.monotonic() + 10
        while not admin_policy(gw).json()["last_error"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert admin_policy(gw).json()["last_error"] == [
            f"{directory}/bundle.toml:9: provider[0].api_keys[0]: file {key_file} not found"
        ]
        upstream.reject_keys.clear()
        key_file.write_text(NEWER)
        wait_for_key(gw, upstream, NEWER)
        assert admin_policy(gw).json()["last_error"] is None
        assert_never_shown(gw, OLD, NEW, NEWER)


def test_rotated_env_file_reloads_without_restart(upstream: FakeUpstream, tmp_path: Path) -> None:
    env_file = tmp_path / "etc" / "tollgate.env"
    env_file.parent.mkdir()
    env_file.write_text(f"# provider keys\nOPENAI_API_KEY={OLD}\n")
    directory = bundle(tmp_path / "policies", upstream.base_url, "${OPENAI_API_KEY}")
    env = {"OPENAI_API_KEY": "sk-process-env-loses"}  # the env file is merged over the environment
    with GatewayProcess(directory, tmp_path / "data", env=env, extra=["--env-file", str(env_file)]) as gw:
        wait_for_key(gw, upstream, OLD)
        upstream.reject_keys.add(OLD)
        write_atomic(env_file, f"OPENAI_API_KEY={NEW}\n")
        wait_for_key(gw, upstream, NEW)
        assert_never_shown(gw, OLD, NEW)


def test_env_file_setting_from_the_config_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    """`env_file` in the `--config` file reaches the workers like the flag does."""
    env_file = tmp_path / "tollgate.env"
    env_file.write_text(f"OPENAI_API_KEY={OLD}\n")
    config = tmp_path / "tollgate.toml"
    config.write_text(f'env_file = "{env_file}"\n')
    directory = bundle(tmp_path / "policies", upstream.base_url, "${OPENAI_API_KEY}")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    with GatewayProcess(directory, tmp_path / "data", env=env, extra=["--config", str(config)]) as gw:
        wait_for_key(gw, upstream, OLD)
        write_atomic(env_file, f"OPENAI_API_KEY={NEW}\n")
        wait_for_key(gw, upstream, NEW)
