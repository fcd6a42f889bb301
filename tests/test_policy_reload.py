"""PolicyStore: hot reload of a bundle directory watched with watchfiles.

A valid edit swaps the snapshot; a broken one leaves the last good snapshot serving and is
reported in `last_error` until it is fixed. Waits poll with a deadline; nothing sleeps a fixed
time. The reload latencies measured here are printed (pytest -s shows them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.config import BundleError, Snapshot, load_snapshot
from gateway.config.reload import PolicyStore

PROVIDERS = """\
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "mock"
kind = "mock"
models = [{models}]
"""

RULES = """\
schema = 1

[[rule]]
id = "{rule}"
when = 'request.model == "{model}"'
deny = "{model} is off"
"""


def load(directory: Path) -> Snapshot:
    return load_snapshot(directory, env={})


def write_bundle(directory: Path, models: str = '"m-a"', rule: str = "no-a", model: str = "m-a") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "providers.toml").write_text(PROVIDERS.format(models=models))
    (directory / "rules.toml").write_text(RULES.format(rule=rule, model=model))


def write_atomic(path: Path, text: str) -> None:
    """What editors do: write a temporary file next to the target, then rename it over."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def models_of(store: PolicyStore) -> set[str]:
    return set(store.current.routes)


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until `predicate` holds; fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@asynccontextmanager
async def watching(directory: Path) -> AsyncIterator[PolicyStore]:
    """A store watching `directory`, returned once its watcher has seen a first change (the
    watch starts in the background; an edit made before it is set up would go unnoticed)."""
    store = PolicyStore(directory, load(directory), loader=load)
    store.start_watching()
    probe = directory / "zz-probe.toml"
    try:
        deadline = time.monotonic() + 10
        while store.reloads == 0:
            assert time.monotonic() < deadline, "the watcher never reported a change"
            probe.write_text(f"schema = 1\n# {time.monotonic()}\n")
            try:
                await wait_until(lambda: store.reloads > 0, timeout=0.5)
            except AssertionError:
                continue
        probe.unlink()
        await wait_until(lambda: store.reloads > 1)
        yield store
    finally:
        await store.stop_watching()


def test_valid_edit_swaps(tmp_path: Path) -> None:
    async def scenario() -> None:
        write_bundle(tmp_path)
        async with watching(tmp_path) as store:
            before = store.current
            edited = time.monotonic()
            (tmp_path / "providers.toml").write_text(PROVIDERS.format(models='"m-a", "m-b"'))
            latency = await wait_until(lambda: "m-b" in models_of(store))
            print(f"\nreload latency (in-place write): {(time.monotonic() - edited) * 1000:.0f} ms")
            assert latency < 2.0
            assert store.current.revision != before.revision
            assert store.last_error == []
            assert "m-b" not in before.routes  # a request holding the old snapshot is unaffected

    asyncio.run(scenario())


def test_invalid_edit_keeps_the_old_snapshot_until_fixed(tmp_path: Path) -> None:
    async def scenario() -> None:
        write_bundle(tmp_path)
        async with watching(tmp_path) as store:
            good = store.current
            rules = tmp_path / "rules.toml"
            rules.write_text(RULES.format(rule="no-a", model="m-a").replace("request.model", "request.modle"))
            await wait_until(lambda: bool(store.last_error))
            assert store.current is good
            assert [str(p) for p in store.last_error] == [
                f"{rules}:5: rule[0].when: rule 'no-a': CEL unknown field `request.modle` (known: "
                "endpoint, headers, ip, max_tokens, message_count, metadata, model, stream) at 1:9"
            ]
            assert store.last_error_at is not None

            (tmp_path / "providers.toml").write_text("schema = 1\n[[provider]\n")  # worse
            await wait_until(lambda: "TOML syntax error" in str(store.last_error))
            assert store.current is good

            write_bundle(tmp_path, rule="no-b", model="m-b")
            await wait_until(lambda: not store.last_error)
            assert store.last_error_at is None
            assert [r.id for r in store.current.rules.rules] == ["no-b"]

    asyncio.run(scenario())


def test_atomic_save_is_picked_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        write_bundle(tmp_path)
        async with watching(tmp_path) as store:
            for n, models in enumerate(['"m-a", "m-b"', '"m-c"', '"m-c", "m-d"']):
                edited = time.monotonic()
                write_atomic(tmp_path / "providers.toml", PROVIDERS.format(models=models))
                wanted = {m.strip(' "') for m in models.split(",")}
                await wait_until(lambda wanted=wanted: models_of(store) == wanted)
                print(f"\nreload latency (atomic save {n}): {(time.monotonic() - edited) * 1000:.0f} ms")
            assert store.last_error == []

    asyncio.run(scenario())


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_git_checkout_is_one_change(tmp_path: Path) -> None:
    """A checkout rewrites, adds and deletes several files at once; the store ends up on the
    checked-out revision with no error from a half-written state."""

    async def scenario() -> None:
        write_bundle(tmp_path)
        git(tmp_path, "init", "-q", "-b", "main")
        git(tmp_path, "add", ".")
        git(tmp_path, "commit", "-q", "-m", "a")
        main = git(tmp_path, "rev-parse", "--short=12", "HEAD")
        git(tmp_path, "checkout", "-q", "-b", "next")
        (tmp_path / "rules.toml").unlink()
        (tmp_path / "providers.toml").write_text(PROVIDERS.format(models='"m-x", "m-y"'))
        (tmp_path / "team").mkdir()
        (tmp_path / "team" / "rules.toml").write_text(RULES.format(rule="no-x", model="m-x"))
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", "b")
        nxt = git(tmp_path, "rev-parse", "--short=12", "HEAD")
        git(tmp_path, "checkout", "-q", "main")

        async with watching(tmp_path) as store:
            assert store.current.revision == main
            for revision, models, rule in ((nxt, {"m-x", "m-y"}, "no-x"), (main, {"m-a"}, "no-a")):
                edited = time.monotonic()
                git(tmp_path, "checkout", "-q", "next" if revision == nxt else "main")
                await wait_until(lambda revision=revision: store.current.revision == revision)
                print(f"\nreload latency (git checkout): {(time.monotonic() - edited) * 1000:.0f} ms")
                assert models_of(store) == models
                assert [r.id for r in store.current.rules.rules] == [rule]
                assert store.last_error == []

    asyncio.run(scenario())


def test_removing_every_file_keeps_serving(tmp_path: Path) -> None:
    async def scenario() -> None:
        write_bundle(tmp_path)
        async with watching(tmp_path) as store:
            good = store.current
            for f in tmp_path.glob("*.toml"):
                f.unlink()
            await wait_until(lambda: bool(store.last_error))
            assert [p.message for p in store.last_error] == ["bundle has no *.toml files"]
            assert store.current is good

    asyncio.run(scenario())


def test_reload_survives_a_loader_bug(tmp_path: Path) -> None:
    write_bundle(tmp_path)

    def broken(directory: Path) -> Snapshot:
        raise RuntimeError("boom")

    store = PolicyStore(tmp_path, load(tmp_path), loader=broken)
    good = store.current
    assert store.reload() is False
    assert store.current is good
    assert "RuntimeError('boom')" in str(store.last_error[0])


def test_reload_without_watching(tmp_path: Path) -> None:
    write_bundle(tmp_path)
    store = PolicyStore(tmp_path, load(tmp_path), loader=load)
    (tmp_path / "rules.toml").write_text("schema = 1\n")
    assert store.reload() is True
    assert (store.reloads, store.current.rules.rules) == (1, ())


def test_open_falls_back_to_the_last_good_copy(tmp_path: Path) -> None:
    bundle, last_good = tmp_path / "policies", tmp_path / "data" / "last-good"
    write_bundle(bundle)
    (bundle / "teams").mkdir()
    (bundle / "teams" / "more.toml").write_text("schema = 1\n[group.pro]\n")
    store = PolicyStore.open(bundle, last_good_dir=last_good)
    assert store.last_error == []
    assert sorted(p.relative_to(last_good).as_posix() for p in last_good.rglob("*.toml")) == [
        "providers.toml",
        "rules.toml",
        "teams/more.toml",
    ]

    # A bad edit, then the worker restarts: it serves the copy and reports the error.
    (bundle / "providers.toml").write_text(PROVIDERS.format(models='"m-a"') + "modles = []\n")
    respawned = PolicyStore.open(bundle, last_good_dir=last_good)
    assert set(respawned.current.routes) == {"m-a"}
    assert set(respawned.current.groups) == {"pro"}
    assert [str(p) for p in respawned.last_error] == [
        f'{bundle}/providers.toml:10: provider[0].modles: unknown field (did you mean "models"?)'
    ]
    assert respawned.directory == bundle

    # The fix is picked up by the next reload, and the copy follows it.
    write_bundle(bundle, models='"m-a", "m-b"')
    assert respawned.reload() is True
    assert respawned.last_error == []
    assert set(load(last_good).routes) == {"m-a", "m-b"}


def test_open_without_a_good_copy_raises(tmp_path: Path) -> None:
    bundle = tmp_path / "policies"
    bundle.mkdir()
    (bundle / "providers.toml").write_text("schema = 2\n")
    with pytest.raises(BundleError):
        PolicyStore.open(bundle)
    with pytest.raises(BundleError):
        PolicyStore.open(bundle, last_good_dir=tmp_path / "never-written")


def test_the_fallback_keeps_the_good_revision(tmp_path: Path) -> None:
    """A respawned worker serving the last good copy reports the revision that copy was loaded
    under, not the commit of the work tree the copy sits in (here: the broken commit)."""
    bundle, last_good = tmp_path / "policies", tmp_path / "data" / "last-good"
    write_bundle(bundle)
    (tmp_path / ".gitignore").write_text("data/\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "good")
    good = git(tmp_path, "rev-parse", "--short=12", "HEAD")
    assert PolicyStore.open(bundle, last_good_dir=last_good).current.revision == good

    (bundle / "rules.toml").write_text("schema = 1\n[[rule]]\nid = 'x'\nwhen = 'true'\n")  # no action
    git(tmp_path, "commit", "-q", "-am", "broken")
    respawned = PolicyStore.open(bundle, last_good_dir=last_good)
    assert respawned.last_error
    assert [r.id for r in respawned.current.rules.rules] == ["no-a"]
    assert respawned.current.revision == good


def test_moving_a_directory_in_and_out(tmp_path: Path) -> None:
    """`mv team elsewhere` is one event on the directory, none on the files it holds."""

    async def scenario() -> None:
        bundle, outside = tmp_path / "policies", tmp_path / "outside"
        write_bundle(bundle)
        (bundle / "team").mkdir()
        (bundle / "team" / "rules.toml").write_text(RULES.format(rule="no-b", model="m-b"))
        outside.mkdir()
        async with watching(bundle) as store:
            assert [r.id for r in store.current.rules.rules] == ["no-a", "no-b"]
            (bundle / "team").rename(outside / "team")
            await wait_until(lambda: [r.id for r in store.current.rules.rules] == ["no-a"])
            (outside / "team").rename(bundle / "team-2")
            await wait_until(lambda: [r.id for r in store.current.rules.rules] == ["no-a", "no-b"])
            assert store.last_error == []

    asyncio.run(scenario())
