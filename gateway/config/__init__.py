"""Policy bundles: the format, loading, validation, compilation and hot reload."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from ..worker_settings import ENV_FILE_ENV
from .compile import compile_bundle
from .envsubst import EnvFileError, read_env_file
from .load import read_bundle
from .problems import BundleError, Problem
from .revision import bundle_revision
from .snapshot import Snapshot

__all__ = ["BundleError", "Problem", "Snapshot", "bundle_env", "load_snapshot"]


def bundle_env(env_file: str | Path | None = None) -> dict[str, str]:
    """The environment `${VAR}` reads: the process's, with the env file (`--env-file`, else
    `TOLLGATE_ENV_FILE`) merged over it. Read again on every call, so on every reload: a key
    rotated in the env file needs no restart. Raises `BundleError` for a missing or bad file."""
    path = env_file if env_file is not None else os.environ.get(ENV_FILE_ENV) or None
    env = dict(os.environ)
    if path is not None:
        try:
            env.update(read_env_file(path))
        except EnvFileError as exc:
            problem = Problem(exc.path, exc.line, "", exc.message)
            raise BundleError([problem], sources=[str(Path(path).absolute())]) from None
    return env


def load_snapshot(
    directory: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    allow_missing_env: bool = False,
    env_file: str | Path | None = None,
) -> Snapshot:
    """Read, validate and compile a bundle directory; raise `BundleError` listing every problem.

    With no `env`, the environment is `bundle_env(env_file)`: the process environment and the
    env file, both read now."""
    path = Path(directory)
    raw, problems = read_bundle(path)
    if problems:
        raise BundleError(problems)
    revision = bundle_revision(path, raw.files)
    file = env_file if env_file is not None else os.environ.get(ENV_FILE_ENV) or None
    extra = [str(Path(file).absolute())] if env is None and file is not None else []
    try:
        snapshot = compile_bundle(
            raw, bundle_env(env_file) if env is None else env, revision, allow_missing_env=allow_missing_env
        )
    except BundleError as exc:
        raise BundleError(exc.problems, sources=sorted({*exc.sources, *extra})) from None
    if extra:
        snapshot = dataclasses.replace(snapshot, sources=tuple(sorted({*snapshot.sources, *extra})))
    return snapshot
