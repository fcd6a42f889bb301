"""`tollgate serve` refuses bad settings and a taken port with one clear line, not a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.gateway_process import ROOT


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--policies", "policies", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def test_invalid_settings_name_the_setting(tmp_path: Path) -> None:
    for args, env, fragment in [
        (["--port", "99999"], {}, "port: Input should be less than or equal to 65535"),
        (["--node-id", "not a name"], {}, "node_id: String should match pattern"),
        ([], {"TOLLGATE_PORT": "eighty"}, "port: Input should be a valid integer"),
    ]:
        done = serve("--data-dir", str(tmp_path), *args, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"cannot start: invalid settings: {fragment}" in done.stderr


def test_a_taken_port_is_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--data-dir", str(tmp_path), "--port", str(port))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert not (tmp_path / "usage.duckdb").exists()  # nothing was started


def test_an_unusable_redis_url_is_refused_before_start(tmp_path: Path) -> None:
    done = serve("--data-dir", str(tmp_path), "--state-store", "redis", "--redis-url", "foo://x")
    assert done.returncode == 1 and "cannot start: redis_url foo://x: Redis URL must specify" in done.stderr
    done = serve("--data-dir", str(tmp_path), "--state-store", "redis", "--redis-cluster",
                 "--redis-url", "redis://:hunter2@127.0.0.1:7000/2")
    assert done.returncode == 1 and "Redis Cluster has only database 0" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_a_gateway_directory_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    """The supervisor and the ledger owner are `python -m ...` processes: started from a
    directory holding some other `gateway/` package (a GitOps repository's folder, another
    checkout), they still run this installation's code."""
    import httpx

    from tests.gateway_process import free_port

    decoy = tmp_path / "gateway"
    (decoy / "serve").mkdir(parents=True)
    (decoy / "usage").mkdir()
    for init in ("__init__.py", "serve/__init__.py", "usage/__init__.py"):
        (decoy / init).write_text("")
    (decoy / "serve" / "run.py").write_text("raise SystemExit('the decoy supervisor ran')\n")
    (decoy / "usage" / "ingester.py").write_text("raise SystemExit('the decoy ledger owner ran')\n")
    tollgate = Path(sys.executable).parent / "tollgate"
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(tollgate), "serve", "--policies", str(ROOT / "policies"), "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "TOLLGATE_LOG_LEVEL": "warning"})
    try:
        answer = None
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert answer is not None and answer.status_code == 200, (tmp_path / "serve.log").read_text()
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/models",
                           headers={"authorization": "Bearer x"}, timeout=5)
        assert answer.status_code in (200, 401)
        text = (tmp_path / "serve.log").read_text()
        assert "decoy" not in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    assert "decoy" not in (tmp_path / "serve.log").read_text()
