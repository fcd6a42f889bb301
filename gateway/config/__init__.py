"""Policy bundles: the format, loading, validation, compilation and hot reload."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .compile import compile_bundle
from .load import read_bundle
from .problems import BundleError, Problem
from .revision import bundle_revision
from .snapshot import Snapshot

__all__ = ["BundleError", "Problem", "Snapshot", "load_snapshot"]


def load_snapshot(
    directory: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    allow_missing_env: bool = False,
) -> Snapshot:
    """Read, validate and compile a bundle directory; raise `BundleError` listing every problem."""
    path = Path(directory)
    raw, problems = read_bundle(path)
    if problems:
        raise BundleError(problems)
    revision = bundle_revision(path, raw.files)
    return compile_bundle(
        raw, os.environ if env is None else env, revision, allow_missing_env=allow_missing_env
    )
