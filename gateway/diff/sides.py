"""One side of a diff: a bundle directory, or a git revision of one (`main:policies`, `HEAD~1`).

A revision is written out with `git archive` into a temporary directory and compiled with the
real loader, so both sides pass exactly what `tollgate check` passes. Problems of a revision are
shown as `REV:path/file.toml:LINE` rather than under the temporary directory.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import BundleError, Problem, Snapshot, load_snapshot


class SideError(Exception):
    """A side that cannot be read or does not pass check; `problems` are located."""

    def __init__(self, spec: str, message: str, problems: list[Problem] | None = None) -> None:
        self.spec, self.message, self.problems = spec, message, problems or []
        super().__init__(f"{spec}: {message}")


@dataclass(frozen=True)
class Side:
    spec: str  # what the user typed
    label: str  # a directory, or REV:path
    snapshot: Snapshot


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=60, check=False)


def _repo_root(start: Path) -> Path | None:
    done = _git(start, "rev-parse", "--show-toplevel")
    return Path(done.stdout.decode().strip()) if done.returncode == 0 else None


def parse_spec(spec: str, default_path: str) -> tuple[str, str] | None:
    """`REV:path` or a bare `REV` (then the path of the other side); None for a directory."""
    if Path(spec).is_dir():
        return None
    rev, sep, path = spec.partition(":")
    return (rev, path.strip("/") or ".") if sep else (spec, default_path)


def relative_in_repo(directory: str, cwd: Path) -> str:
    """A bundle directory as a path inside its repository (the path a bare `REV` refers to)."""
    root = _repo_root(cwd)
    path = Path(directory).resolve()
    if root is None or not path.is_relative_to(root.resolve()):
        return directory
    return str(path.relative_to(root.resolve())) or "."


@contextlib.contextmanager
def materialise(spec: str, default_path: str, cwd: Path) -> Iterator[tuple[Path, str]]:
    """The directory to load and its label; a revision lives in a temporary directory for the
    duration of the `with`."""
    parsed = parse_spec(spec, default_path)
    if parsed is None:
        yield Path(spec), spec
        return
    rev, path = parsed
    if _repo_root(cwd) is None:
        raise SideError(spec, "not a directory, and not inside a git repository to read a revision from")
    commit = _git(cwd, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if commit.returncode != 0:
        raise SideError(spec, f"no such directory, and {rev!r} is not a git revision")
    # `git archive` paths are relative to the current directory inside the repository.
    archive = _git(cwd, "archive", "--format=tar", f"{rev}:{path}" if path != "." else rev)
    if archive.returncode != 0:
        detail = archive.stderr.decode(errors="replace").strip().splitlines()
        raise SideError(spec, f"{path!r} does not exist at {rev}" + (f" ({detail[-1]})" if detail else ""))
    label = f"{rev}:{path}"
    with tempfile.TemporaryDirectory(prefix="tollgate-diff-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp), label


def load_side(
    spec: str, directory: Path, label: str, *, allow_missing_env: bool, env_file: str | None
) -> Side:
    try:
        snapshot = load_snapshot(directory, allow_missing_env=allow_missing_env, env_file=env_file)
    except BundleError as exc:
        problems = [_relabel(p, directory, label) for p in exc.problems]
        raise SideError(spec, "does not pass check", problems) from None
    return Side(spec=spec, label=label, snapshot=snapshot)


def _relabel(problem: Problem, directory: Path, label: str) -> Problem:
    prefix = str(directory)
    if label == str(directory) or not problem.file.startswith(prefix):
        return problem
    rest = problem.file[len(prefix):].lstrip("/")
    rev, _, path = label.partition(":")
    inside = f"{path.rstrip('/')}/{rest}" if path and path != "." else rest
    return Problem(f"{rev}:{inside}", problem.line, problem.path, problem.message, problem.severity)
