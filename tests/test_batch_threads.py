"""`batch_threads` (with `server = "granian"`): a granian worker's runtime threads run
SCHED_BATCH (they never preempt the worker's Python thread), the Python thread itself stays SCHED_OTHER, and the setting turns it
off. Read from /proc of a real `tollgate serve` worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway_process import ROOT, GatewayProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")


def _worker_pid(gateway: GatewayProcess) -> int:
    """granian's worker: forked from the supervisor (same command line), the one with threads."""
    assert gateway.proc is not None
    session = os.getsid(gateway.proc.pid)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            cmd = (entry / "cmdline").read_bytes()
            threads = len(list((entry / "task").iterdir()))
        except (OSError, ProcessLookupError):
            continue
        if b"gateway.serve.run" in cmd and int(entry.name) != gateway.proc.pid and threads > 2:
            found.append(int(entry.name))
    assert len(found) == 1, found
    return found[0]


def _policies(pid: int) -> dict[int, int]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = os.sched_getscheduler(int(task.name))
        except OSError:
            continue
    return out


def _serve_and_read(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[int, int]]:
    gateway = GatewayProcess(ROOT / "policies", tmp_path / "data", env={"TOLLGATE_SERVER": "granian", **env}).start()
    try:
        for _ in range(20):  # requests wake granian's runtime threads
            assert httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200
        pid = _worker_pid(gateway)
        deadline = time.monotonic() + 10
        policies = _policies(pid)
        while env.get("TOLLGATE_BATCH_THREADS") != "false" and time.monotonic() < deadline:
            policies = _policies(pid)
            if all(p == os.SCHED_BATCH for tid, p in policies.items() if tid != pid):
                break
            time.sleep(0.05)
        return pid, policies
    finally:
        gateway.stop()


def test_a_workers_runtime_threads_are_batch_and_its_python_thread_is_not(tmp_path: Path) -> None:
    pid, policies = _serve_and_read(tmp_path, {})
    assert policies[pid] == os.SCHED_OTHER  # the Python thread (tid = pid) keeps its policy
    others = {tid: p for tid, p in policies.items() if tid != pid}
    assert others and all(p == os.SCHED_BATCH for p in others.values()), policies


def test_the_setting_turns_it_off(tmp_path: Path) -> None:
    _, policies = _serve_and_read(tmp_path, {"TOLLGATE_BATCH_THREADS": "false"})
    assert set(policies.values()) == {os.SCHED_OTHER}


CHILD = """
import os, threading
from gateway.server.threads import batch_other_threads
started, stop = threading.Event(), threading.Event()
thread = threading.Thread(target=lambda: (started.set(), stop.wait(10)))
thread.start()
started.wait(5)
before = os.sched_getscheduler(0)
changed = batch_other_threads()
print(changed, os.sched_getscheduler(thread.native_id) == os.SCHED_BATCH,
      os.sched_getscheduler(0) == before, batch_other_threads())
stop.set()
thread.join()
"""


def test_only_other_threads_change() -> None:
    """In a child process, so that this test's own threads keep their policy."""
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    changed, other_is_batch, caller_unchanged, again = done.stdout.split()
    assert int(changed) >= 1 and other_is_batch == "True" and caller_unchanged == "True"
    assert again == "0"  # already batch: nothing changes twice
