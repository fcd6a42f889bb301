"""The live policy: the current snapshot, swapped atomically on a valid change.

Each worker owns a `PolicyStore`. It watches the bundle *directory* with watchfiles (editors'
atomic saves and `git checkout` show up as batches of add/delete events), waits for a short
quiet period, re-reads everything in a thread and swaps the snapshot only if it compiles.
In-flight requests keep the snapshot object they started with. A bad bundle leaves the last
good one serving and is reported once through `last_error`.

Mounted the GitOps way, the files change by symlink swaps rather than writes: a Kubernetes
ConfigMap renames a new `..data` link over the old one inside the directory (the visible files
link into it), git-sync renames its `--link` over the old one above it (the directory path
itself changes target). The first shows as an event on `..data`; the second as none at all
(inotify watches the old target), so the watch also re-resolves the path every quarter second
and, when its target moved, reloads and watches the new one (tests/test_symlink_reload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import watchfiles

from . import load_snapshot
from .load import bundle_files
from .problems import BundleError, Problem
from .snapshot import Snapshot

log = logging.getLogger("tollgate.policy")
_REVISION_FILE = ".revision"
_INSTALL_ATTEMPTS = 64  # far more than concurrent workers: each can beat us at most once
_LEFTOVER_AGE_S = 600.0
_LINK_CHECK_MS = 250  # how often the watch checks whether the bundle path now resolves elsewhere


class PolicyStore:
    def __init__(
        self,
        directory: Path,
        snapshot: Snapshot,
        *,
        last_good_dir: Path | None = None,
        loader: Callable[[Path], Snapshot] = load_snapshot,
    ) -> None:
        self.directory = directory
        self.current = snapshot
        self.last_error: list[Problem] = []
        self.last_error_at: datetime | None = None
        self.reloads = 0
        self._loader = loader
        self._last_good_dir = last_good_dir
        self._task: asyncio.Task[None] | None = None
        # Files outside the bundle that the last load read (`${file:...}`, the env file): watched too.
        self.sources: tuple[str, ...] = snapshot.sources
        self._stop = asyncio.Event()

    @classmethod
    def open(cls, directory: Path, last_good_dir: Path | None = None) -> PolicyStore:
        """Load the bundle; when it is broken but a last good copy exists (a worker respawned
        after a bad edit), serve that copy and report the error."""
        try:
            snapshot = load_snapshot(directory)
        except BundleError as exc:
            if last_good_dir is None or not bundle_files(last_good_dir):
                raise
            snapshot = load_snapshot(last_good_dir)
            # The copy's own revision (a content hash, or the commit of whatever work tree it
            # sits in) is not the one its rows were priced under: use the one kept with it.
            kept = last_good_dir / _REVISION_FILE
            if kept.is_file():
                snapshot = dataclasses.replace(snapshot, revision=kept.read_text().strip())
            store = cls(directory, snapshot, last_good_dir=last_good_dir)
            store._record_error(exc)
            return store
        store = cls(directory, snapshot, last_good_dir=last_good_dir)
        store._keep_copy()
        _log_warnings(snapshot)
        return store

    def reload(self) -> bool:
        """Re-read the bundle; swap on success. Never raises for a bad bundle."""
        try:
            snapshot = self._loader(self.directory)
        except BundleError as exc:
            self.sources = exc.sources or self.current.sources
            self._record_error(exc)
            return False
        except Exception as exc:  # a loader bug must not kill the watcher
            self._record_error(BundleError([Problem(str(self.directory), None, "", repr(exc))]))
            return False
        self.current = snapshot  # atomic: readers hold the old object until they finish
        self.sources = snapshot.sources
        self.reloads += 1
        if self.last_error:
            log.info("policy bundle fixed; now serving revision %s", snapshot.revision)
        self.last_error, self.last_error_at = [], None
        self._keep_copy()
        log.info("policy revision %s loaded", snapshot.revision)
        _log_warnings(snapshot)
        return True

    def _record_error(self, exc: BundleError) -> None:
        if exc.problems != self.last_error:  # log a given error once, not on every event
            log.error("policy bundle rejected; still serving %s:\n%s", self.current.revision, exc)
        self.last_error = exc.problems
        self.last_error_at = datetime.now(UTC)

    def _keep_copy(self) -> None:
        """Keep the last good bundle so that a respawned worker can serve it."""
        if self._last_good_dir is None:
            return
        try:
            keep_copy(self.directory, self._last_good_dir, self.current.revision)
        except OSError as exc:
            log.warning("could not keep a copy of the last good bundle: %s", exc)

    def start_watching(self, debounce_ms: int = 150) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(debounce_ms))

    async def stop_watching(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _watch(self, debounce_ms: int) -> None:
        """Watch the bundle directory, and the directories of the files it reads from outside
        (secrets, the env file); when a reload changes that set, watch the new one."""
        while not self._stop.is_set():
            sources = self.sources
            root = self.directory.resolve()
            if not root.is_dir():  # between a link swap and the new target's creation
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _LINK_CHECK_MS / 1000)
                continue
            watched = _source_dirs(self.directory, sources)
            # Only a path that goes through a symlink (git-sync's link) can move without an event
            # in the watched tree: only then wake every _LINK_CHECK_MS to look (an idle worker
            # otherwise spends most of its CPU here).
            linked = root != self.directory.absolute()
            async for changes in watchfiles.awatch(
                root,
                *watched,
                debounce=debounce_ms,
                step=50,
                stop_event=self._stop,
                watch_filter=_Filter(sources, root),
                recursive=True,
                rust_timeout=_LINK_CHECK_MS if linked else 5_000,
                yield_on_timeout=linked,  # an empty batch: time to check the path's symlinks
            ):
                moved = self.directory.resolve() != root
                if not changes and not moved:
                    continue
                await asyncio.to_thread(self.reload)
                if moved or _source_dirs(self.directory, self.sources) != watched or self.sources != sources:
                    break
            else:
                return


def keep_copy(bundle: Path, last_good: Path, revision: str) -> None:
    """Copy `bundle` to `last_good`, which is then always one complete bundle (old or new).

    Every worker keeps a copy at start and after each reload, usually at the same moment as
    its siblings: each writes its own temporary directory, then renames it into place.
    """
    _sweep_leftovers(last_good)
    tmp = _private_path(last_good, "tmp")
    try:
        _write_copy(bundle, tmp, revision)
        _install(tmp, last_good)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once installed


def _private_path(last_good: Path, kind: str) -> Path:
    # Unique per writer (pid for processes, random for threads); hidden, next to the target so
    # that the rename stays on one file system.
    return last_good.with_name(f".{last_good.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}")


def _write_copy(bundle: Path, tmp: Path, revision: str) -> None:
    tmp.mkdir(parents=True)
    for path in bundle_files(bundle):
        target = tmp / path.relative_to(bundle)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (tmp / _REVISION_FILE).write_text(revision + "\n")  # hidden: not a bundle file


def _install(tmp: Path, last_good: Path) -> None:
    """Rename `tmp` to `last_good`. A directory cannot be renamed over a non-empty one, so an
    existing copy is first moved aside, unless it is this very bundle (a sibling worker got
    there first: ours is redundant). Between the two renames there is no copy: a worker
    respawning on a broken bundle in that instant finds none, which needs a good reload and a
    break within the same milliseconds."""
    for _ in range(_INSTALL_ATTEMPTS):  # each failed attempt means another writer installed
        try:
            tmp.rename(last_good)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if _same_tree(tmp, last_good):
            return
        with contextlib.suppress(FileNotFoundError):  # another writer moved it aside first
            aside = _private_path(last_good, "old")
            last_good.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"{last_good} kept being replaced by other writers")


def _same_tree(a: Path, b: Path) -> bool:
    try:
        return _tree(a) == _tree(b)
    except OSError:  # b was moved aside while being read
        return False


def _tree(directory: Path) -> dict[Path, bytes]:
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _sweep_leftovers(last_good: Path) -> None:
    """Remove what writers killed mid-copy left (and the fixed-name temp of older versions). A
    live writer's directory is seconds old, so only old ones go."""
    cutoff = time.time() - _LEFTOVER_AGE_S
    for pattern in (f".{last_good.name}.*", f"{last_good.name}.tmp"):
        for path in last_good.parent.glob(pattern):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path)


def _log_warnings(snapshot: Snapshot) -> None:
    for warning in snapshot.warnings:  # e.g. unpriced models under lenient pricing
        log.warning("policy %s: %s", snapshot.revision, warning)


def _source_dirs(bundle: Path, sources: tuple[str, ...]) -> list[Path]:
    """The existing directories of `sources` that the bundle watch does not cover already."""
    dirs = {Path(s).parent for s in sources}
    root = bundle.resolve()
    return sorted(d for d in dirs if d.is_dir() and not d.resolve().is_relative_to(root))


class _Filter:
    """Bundle files (`_bundle_filter`), and the files the bundle reads from outside it. A
    Kubernetes volume (ConfigMap, secret) updates its files by swapping a `..data` symlink in
    the same directory: those `..` entries count as a change of the files beside them. What is
    written under a hidden directory of the bundle (the `..2026_...` directory the next
    `..data` will point at) is not a bundle file: no reload before the swap."""

    def __init__(self, sources: tuple[str, ...], root: Path | None = None) -> None:
        self.sources = frozenset(sources)
        self.dirs = frozenset(str(Path(s).parent) for s in sources)
        self.root = root

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        if path in self.sources:
            return True
        where = Path(path)
        if where.name.startswith("..") and (str(where.parent) in self.dirs or where.parent == self.root):
            return True
        if self.root is not None and _hidden_below(where, self.root):
            return False
        return _bundle_filter(change, path)


def _hidden_below(path: Path, root: Path) -> bool:
    return path.is_relative_to(root) and any(p.startswith(".") for p in path.relative_to(root).parts)


def _bundle_filter(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    if name.startswith("."):
        return False
    if name.endswith(".toml"):
        return True
    # A directory moved in or out of the bundle shows as one event on the directory and none on
    # the files in it (a deleted path can no longer tell whether it was one).
    return change == watchfiles.Change.deleted or Path(path).is_dir()
