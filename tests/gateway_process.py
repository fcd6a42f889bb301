"""Run the real `tollgate serve` (its worker processes) in a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, policies: Path, data_dir: Path, *, workers: int = 1,
                 env: dict[str, str] | None = None, extra: list[str] | None = None) -> None:
        self.policies, self.data_dir, self.workers = policies, data_dir, workers
        self.port = free_port()
        self.env = env or {}
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"gateway-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TOLLGATE_LOG_LEVEL": "warning", **self.env}
        cmd = [sys.executable, "-m", "gateway", "serve", "--policies", str(self.policies),
               "--data-dir", str(self.data_dir), "--port", str(self.port),
               "--workers", str(self.workers), *self.extra]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def usage_sql(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a read-only query on the ledger, through `tollgate usage sql` as an operator runs it."""
        done = subprocess.run([sys.executable, "-m", "gateway", "usage", "sql", "--data-dir", str(self.data_dir),
                               "--format", "json", sql], cwd=ROOT, capture_output=True, timeout=30, check=True)
        text = done.stdout.decode().strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def usage_rows(self, sql: str, until: Callable[[list[dict[str, Any]]], bool] = bool,
                   timeout: float = 10.0) -> list[dict[str, Any]]:
        """`usage_sql` polled until `until(rows)` (rows reach the ledger within about a second)."""
        deadline = time.monotonic() + timeout
        rows = self.usage_sql(sql)
        while not until(rows) and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.usage_sql(sql)
        return rows

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
