"""The live policy: the current snapshot, swapped atomically on a valid change.

Each worker owns a `PolicyStore`. It watches the bundle *directory* with watchfiles (editors'
atomic saves and `git checkout` show up as batches of add/delete events), waits for a short
quiet period, re-reads everything in a thread and swaps the snapshot only if it compiles.
In-flight requests keep the snapshot object they started with. A bad bundle leaves the last
good one serving and is reported once through `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
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
            self._record_error(exc)
            return False
        except Exception as exc:  # a loader bug must not kill the watcher
            self._record_error(BundleError([Problem(str(self.directory), None, "", repr(exc))]))
            return False
        self.current = snapshot  # atomic: readers hold the old object until they finish
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
        tmp = self._last_good_dir.with_name(self._last_good_dir.name + ".tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for path in bundle_files(self.directory):
                target = tmp / path.relative_to(self.directory)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            (tmp / _REVISION_FILE).write_text(self.current.revision + "\n")  # hidden: not a bundle file
            shutil.rmtree(self._last_good_dir, ignore_errors=True)
            tmp.rename(self._last_good_dir)
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
        async for _changes in watchfiles.awatch(
            self.directory,
            debounce=debounce_ms,
            step=50,
            stop_event=self._stop,
            watch_filter=_bundle_filter,
            recursive=True,
        ):
            await asyncio.to_thread(self.reload)


def _log_warnings(snapshot: Snapshot) -> None:
    for warning in snapshot.warnings:  # e.g. unpriced models under lenient pricing
        log.warning("policy %s: %s", snapshot.revision, warning)


def _bundle_filter(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    if name.startswith("."):
        return False
    if name.endswith(".toml"):
        return True
    # A directory moved in or out of the bundle shows as one event on the directory and none on
    # the files in it (a deleted path can no longer tell whether it was one).
    return change == watchfiles.Change.deleted or Path(path).is_dir()
