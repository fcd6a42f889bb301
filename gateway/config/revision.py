"""A bundle's revision: the git commit of its directory (`-dirty` with local edits), else a
content hash of its files."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from pathlib import Path


def content_hash(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(Path(name).name.encode() + b"\0" + files[name] + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def git_revision(directory: Path) -> str | None:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=all", "--", ".")
    return f"{commit}-dirty" if dirty else commit


def bundle_revision(directory: Path, files: Mapping[str, bytes]) -> str:
    return git_revision(directory) or content_hash(files)
