"""The last good bundle copy under concurrent writers: every worker keeps a copy at start and
after each reload, usually at the same moment as its siblings. Whatever the interleaving, the
copy is one complete bundle, no temporary directory is left behind and nothing is logged."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest

from gateway.config import Snapshot, load_snapshot
from gateway.config.reload import PolicyStore
from tests.gateway_process import GatewayProcess

PROVIDERS = """\
schema = 1

[[provider]]
id = "up"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9"
models = ["m"]

[price.m]
input = 1
output = 1
"""


def write_bundle(directory: Path, files: int, tag: str) -> dict[str, bytes]:
    """A bundle of many files (a copy that takes a while), each marked with `tag`."""
    (directory / "teams").mkdir(parents=True, exist_ok=True)
    (directory / "providers.toml").write_text(PROVIDERS)
    for i in range(files):
        (directory / "teams" / f"t{i:04}.toml").write_text(f"schema = 1\n# {tag}\n")
    return tree(directory)


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in directory.rglob("*") if p.is_file() and p.name != ".revision"}


def racing_store(bundle: Path, last_good: Path, start: threading.Barrier) -> PolicyStore:
    """A store whose reload waits for all the others, then keeps its copy at the same moment."""
    snapshot = load_snapshot(bundle, env={})

    def loader(_: Path) -> Snapshot:
        start.wait()
        return snapshot

    return PolicyStore(bundle, snapshot, last_good_dir=last_good, loader=loader)


def test_concurrent_writers_leave_one_complete_copy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundles = [tmp_path / f"bundle-{b}" for b in range(3)]
    contents = [write_bundle(b, 60, b.name) for b in bundles]
    last_good = tmp_path / "data" / "last-good-policies"
    writers = 8
    caplog.set_level(logging.WARNING, logger="tollgate.policy")
    for _ in range(10):
        start = threading.Barrier(writers)
        # Several writers per bundle: some race with an identical copy, some with another one.
        stores = [racing_store(bundles[w % 3], last_good, start) for w in range(writers)]
        threads = [threading.Thread(target=s.reload) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(s.reloads == 1 for s in stores)
        assert tree(last_good) in contents  # one whole bundle, not a mix and not a part
        kept = stores[contents.index(tree(last_good))]  # stores[b] copies bundles[b]
        assert (last_good / ".revision").read_text() == kept.current.revision + "\n"
        assert sorted(p.name for p in last_good.parent.iterdir()) == ["last-good-policies"]
    assert [r.getMessage() for r in caplog.records] == []


def test_a_stale_copy_is_replaced_whole(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    write_bundle(old, 3, "old")
    expected = write_bundle(new, 2, "new")
    last_good = tmp_path / "last-good"
    PolicyStore.open(old, last_good_dir=last_good)
    PolicyStore.open(new, last_good_dir=last_good)
    assert tree(last_good) == expected  # no file of the old copy survives
    PolicyStore.open(new, last_good_dir=last_good)
    assert tree(last_good) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-good", "new", "old"]


def test_leftovers_of_killed_writers_are_swept(tmp_path: Path) -> None:
    bundle, last_good = tmp_path / "policies", tmp_path / "data" / "last-good-policies"
    expected = write_bundle(bundle, 2, "now")
    stale = [last_good.with_name(".last-good-policies.4242.0badcafe.tmp"),
             last_good.with_name(".last-good-policies.4242.0badcafe.old"),
             last_good.with_name("last-good-policies.tmp")]  # what earlier versions left
    live = last_good.with_name(".last-good-policies.4343.c0ffee00.tmp")  # a writer copying now
    for leftover in [*stale, live]:
        (leftover / "teams").mkdir(parents=True)
        (leftover / "teams" / "half.toml").write_text("schema = 1\n")
    for leftover in stale:
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    PolicyStore.open(bundle, last_good_dir=last_good)
    assert tree(last_good) == expected
    assert sorted(p.name for p in last_good.parent.iterdir()) == [live.name, last_good.name]


def test_two_workers_keep_their_copies_without_errors(tmp_path: Path) -> None:
    """`tollgate serve --workers 2`: both workers keep a copy at start and after every edit
    (their watchers fire together), and the log stays free of errors."""
    bundle = tmp_path / "policies"
    write_bundle(bundle, 300, "start")
    edits = 6
    env = {"TOLLGATE_LOG_LEVEL": "info"}  # to see each worker's "policy revision ... loaded"
    with GatewayProcess(bundle, tmp_path / "data", workers=2, env=env) as gw:
        loads = 0
        for edit in range(edits):
            (bundle / "teams" / "t0000.toml").write_text(f"schema = 1\n# edit {edit}\n")
            loads = wait_for_loads(gw, loads + 2)
        log = gw.log()
    problems = [line for line in log.splitlines()
                if re.search(r"WARNING|ERROR|Traceback|File exists|No such file", line)]
    assert problems == []
    last_good = tmp_path / "data" / "last-good-policies"
    assert tree(last_good) == tree(bundle)
    assert not [p.name for p in last_good.parent.iterdir() if "last-good" in p.name and p != last_good]


def wait_for_loads(gw: GatewayProcess, want: int, timeout: float = 5.0) -> int:
    """The count of reloads in the log once it reaches `want`. A worker still starting may miss
    the first edit (it loads the edited bundle instead), so one short is accepted at the end."""
    deadline = time.monotonic() + timeout
    while (loads := gw.log().count("policy revision")) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loads >= want - 1, "the workers did not reload"
    return loads
