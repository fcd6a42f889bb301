"""Hot reload of a bundle mounted the GitOps way, against a running gateway under load.

Kubernetes updates a ConfigMap volume by writing the new files into a fresh hidden directory
(`..2026_12_06_...`), pointing a temporary symlink at it, renaming that over `..data` and
deleting the old directory; the visible `*.toml` are symlinks into `..data`. git-sync checks a
revision out into `.worktrees/<hash>` and swaps its `--link` symlink the same way, so the
gateway's `--policies` path itself runs through a symlink that changes target. Each test swaps
twice (a watch that survives only one swap is a bug too) while clients keep sending requests, and
checks every request succeeded and each revision was picked up. The reload latencies are printed
(pytest -s shows them); they are not asserted (the machine is shared).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import key_hash
from tests.gateway_process import GatewayProcess

KEY = "tg-symlink-reload-key"
PROVIDERS = """\
schema = 1

[[provider]]
id = "mock"
kind = "mock"
models = ["mock-a", "mock-b"]

[model.current]
targets = [{{ provider = "mock", model = "{target}" }}]

[price.mock-a]
input = {price}
output = 1.0

[price.mock-b]
input = 1.0
output = 1.0
"""
KEYS = f"""\
schema = 1

[[key]]
id = "load"
hash = "{key_hash(KEY)}"
"""


def write_version(directory: Path, version: int) -> None:
    directory.mkdir(parents=True)
    target = "mock-a" if version % 2 else "mock-b"
    (directory / "providers.toml").write_text(PROVIDERS.format(target=target, price=f"{version}.0"))
    (directory / "keys.toml").write_text(KEYS)


def swap_link(link: Path, target: str) -> None:
    """Point `link` at `target` atomically: a new symlink renamed over the old one."""
    tmp = link.with_name(f"{link.name}_tmp")
    os.symlink(target, tmp)
    os.replace(tmp, link)


class ConfigMap:
    """The layout and update steps of kubelet's AtomicWriter."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.version = 0

    def update(self, version: int) -> None:
        stamp = f"..2026_12_06_07_00_{version:02d}.{version:09d}"
        write_version(self.mount / stamp, version)
        old = (self.mount / "..data").resolve() if (self.mount / "..data").exists() else None
        swap_link(self.mount / "..data", stamp)
        for name in ("providers.toml", "keys.toml"):
            if not (self.mount / name).is_symlink():
                os.symlink(f"..data/{name}", self.mount / name)
        if old is not None:
            shutil.rmtree(old)
        self.version = version


class GitSync:
    """git-sync v4: worktrees under `<root>/.worktrees/<hash>`, `<root>/<link>` swapped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.link = root / "current"

    def update(self, version: int) -> None:
        worktree = self.root / ".worktrees" / f"{version:040x}"
        write_version(worktree / "policies", version)
        old = self.link.resolve() if self.link.exists() else None
        swap_link(self.link, str(worktree.relative_to(self.root)))
        if old is not None:
            shutil.rmtree(old)


class Load:
    """Clients sending chat completions through the swaps; every answer must be a 200."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        headers = {"authorization": f"Bearer {KEY}"}
        body = {"model": "current", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post("/v1/chat/completions", json=body, headers=headers)
                    outcome = "" if answer.status_code == 200 else f"{answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                with self.lock:
                    if outcome:
                        self.failures.append(outcome)
                    else:
                        self.ok += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=20)


def revision(url: str) -> str:
    return str(httpx.get(f"{url}/readyz", timeout=5).json()["revision"])


def wait_for_change(url: str, old: str, deadline_s: float = 15.0) -> float:
    """Seconds until /readyz reports a revision other than `old` (polled; fails at the deadline)."""
    start = time.monotonic()
    while revision(url) == old:
        assert time.monotonic() - start < deadline_s, "the gateway did not reload the swapped bundle"
        time.sleep(0.02)
    return time.monotonic() - start


def served_model(url: str) -> str:
    answer = httpx.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                        json={"model": "current", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-tollgate-model"]


def swap_under_load(tmp_path: Path, policies: Path, update: Callable[[int], None]) -> list[float]:
    update(1)
    latencies = []
    with GatewayProcess(policies, tmp_path / "data") as gw:
        assert served_model(gw.url) == "mock-a"
        with Load(gw.url) as load:
            for version in (2, 3):
                before = revision(gw.url)
                requests_before = load.ok
                update(version)
                latencies.append(wait_for_change(gw.url, before))
                # traffic kept flowing across the swap
                deadline = time.monotonic() + 10
                while load.ok < requests_before + 20 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert served_model(gw.url) == ("mock-a" if version % 2 else "mock-b")
        assert load.failures == [], load.failures[:5]
        assert load.ok > 40
    return latencies


@pytest.fixture
def report() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    print("\n" + "\n".join(lines))


def test_configmap_data_symlink_swap(tmp_path: Path, report: list[str]) -> None:
    mount = tmp_path / "bundle"
    mount.mkdir()
    latencies = swap_under_load(tmp_path, mount, ConfigMap(mount).update)
    report.append(f"ConfigMap ..data swap: reloaded in {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")


def test_git_sync_worktree_swap(tmp_path: Path, report: list[str]) -> None:
    root = tmp_path / "git"
    root.mkdir()
    sync = GitSync(root)
    latencies = swap_under_load(tmp_path, sync.link / "policies", sync.update)
    report.append(f"git-sync worktree swap: reloaded in {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
