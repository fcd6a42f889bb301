"""`tollgate diff`: fixture bundles for each kind of change against golden outputs, git
revisions as sides, exit codes, and bad input (a missing revision, a side that fails check)."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.diff.command import build
from gateway.diff.render import render

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
GOLDEN = FIXTURES / "golden"
VARIANTS = ["prices", "routes", "access", "keys", "rules", "providers"]
ROOT = Path(__file__).resolve().parent.parent
UPDATE = os.environ.get("TOLLGATE_UPDATE_GOLDEN") == "1"  # rewrite the goldens (then review them)


def args(old: str, new: str, **extra: object) -> argparse.Namespace:
    base = {"old": old, "new": new, "format": "markdown", "replay": None, "data_dir": None, "config": None,
            "parquet": None, "allow_missing_env": False, "env_file": None}
    return argparse.Namespace(**{**base, **extra})


def rendered(old: Path, new: Path, fmt: str) -> str:
    report = build(args(str(old.relative_to(ROOT)), str(new.relative_to(ROOT))))
    # revisions are the work tree's commit: not part of what a golden pins
    report.old["revision"] = report.new["revision"] = "REV"
    out = io.StringIO()
    render(report, fmt, out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt,ext", [("markdown", "md"), ("json", "json")])
def test_golden(variant: str, fmt: str, ext: str) -> None:
    got = rendered(FIXTURES / "base", FIXTURES / variant, fmt)
    golden = GOLDEN / f"{variant}.{ext}"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text()


def test_golden_facts() -> None:
    """What the goldens must say, independently of their wording."""
    access = json.loads(rendered(FIXTURES / "base", FIXTURES / "access", "json"))
    lost = {c["subject"]: c["lost"] for c in access["changes"]["access"]}
    assert lost == {"alice": ["gpt-4o"], "bob": ["gpt-4o"], "dave": []}
    assert access["summary"].startswith("2 keys lose access to gpt-4o; 1 key gains access to gpt-4o-mini")
    keys = json.loads(rendered(FIXTURES / "base", FIXTURES / "keys", "json"))["changes"]["keys"]
    assert {(c["subject"], c["change"]) for c in keys} == {
        ("erin", "added"), ("dave", "removed"), ("bob", "disabled"), ("carol", "expired")}
    rules = json.loads(rendered(FIXTURES / "base", FIXTURES / "rules", "json"))["changes"]["rules"]
    by_id = {c["subject"]: c for c in rules}
    assert by_id["carol-mini-only"]["keys"] == ["carol"]
    assert by_id["carol-mini-only"]["models"] == ["claude-3", "gpt-4o", "smart"]
    assert by_id["no-huge-completions"]["depends_on_request"] == ["request.max_tokens"]
    # the group rule now reaches research (carol) on claude-3: the only cell it moves
    assert by_id["no-claude-for-team"]["keys"] == ["carol"]
    prices = json.loads(rendered(FIXTURES / "base", FIXTURES / "prices", "json"))["changes"]["prices"]
    assert prices[0]["fields"]["input"] == {"old": 2.5, "new": 3.0}


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def tollgate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Done]:
    """The real command line, in this process (a subprocess per call costs ~1 s of imports)."""

    def run(*argv: str, cwd: Path = ROOT) -> Done:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


def test_exit_codes_and_terminal_table(tollgate: Callable[..., Done]) -> None:
    same = tollgate("diff", "tests/fixtures/diff/base", "tests/fixtures/diff/base")
    assert same.returncode == 0, same.stderr
    assert "no changes" in same.stdout
    changed = tollgate("diff", "tests/fixtures/diff/base", "tests/fixtures/diff/access")
    assert changed.returncode == 2, changed.stderr
    assert "Access per key" in changed.stdout and "loses: gpt-4o" in changed.stdout


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose `policies/` is the base bundle at HEAD~1 and the access variant at HEAD."""
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "base", repo / "policies")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "policies")
    _git(repo, "commit", "-q", "-m", "base")
    shutil.rmtree(repo / "policies")
    shutil.copytree(FIXTURES / "access", repo / "policies")
    _git(repo, "commit", "-q", "-am", "team loses gpt-4o")
    return repo


def test_git_revisions(repo: Path, tollgate: Callable[..., Done]) -> None:
    for old, new in [("HEAD~1", "HEAD"), ("HEAD~1:policies", "policies"), ("main~1", "main:policies")]:
        done = tollgate("diff", old, new, "--format", "json", cwd=repo)
        assert done.returncode == 2, (old, new, done.stderr)
        report = json.loads(done.stdout)
        assert report["summary"].startswith("2 keys lose access to gpt-4o"), (old, new)
    assert json.loads(tollgate("diff", "HEAD~1", "HEAD", "--format", "json", cwd=repo).stdout)["old"]["label"] \
        == "HEAD~1:policies"
    assert tollgate("diff", "HEAD", "policies", cwd=repo).returncode == 0


def test_bad_revision_and_path(repo: Path, tollgate: Callable[..., Done]) -> None:
    done = tollgate("diff", "no-such-branch", "policies", cwd=repo)
    assert done.returncode == 1
    assert "'no-such-branch' is not a git revision" in done.stderr and "Traceback" not in done.stderr
    done = tollgate("diff", "HEAD:nowhere", "policies", cwd=repo)
    assert done.returncode == 1 and "'nowhere' does not exist at HEAD" in done.stderr


def test_side_failing_check_is_located(repo: Path, tollgate: Callable[..., Done]) -> None:
    keys = repo / "policies" / "keys.toml"
    keys.write_text(keys.read_text().replace('group = "research"', 'group = "nobody"', 1))
    _git(repo, "commit", "-q", "-am", "broken")
    done = tollgate("diff", "HEAD~1", "HEAD", cwd=repo)
    assert done.returncode == 1
    assert "error: HEAD: does not pass check" in done.stderr
    line = next(i for i, text in enumerate(keys.read_text().splitlines(), 1) if '"nobody"' in text)
    assert f"HEAD:policies/keys.toml:{line}:" in done.stderr, done.stderr
    assert "tollgate-diff-" not in done.stderr  # not the temporary directory


def test_provider_secrets_are_compared_not_shown(tmp_path: Path, tollgate: Callable[..., Done]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(FIXTURES / "base", old)
    shutil.copytree(FIXTURES / "base", new)
    for side, secret in ((old, "sk-old-secret-aaaa1111"), (new, "sk-new-secret-bbbb2222")):
        text = (side / "providers.toml").read_text()
        (side / "providers.toml").write_text(text.replace(
            'id = "backup"\nkind = "mock"', f'id = "backup"\nkind = "mock"\napi_keys = ["{secret}"]\n'
            f'headers = {{ "x-token" = "{secret}" }}'))
    for fmt in ("table", "markdown", "json"):
        done = tollgate("diff", str(old), str(new), "--format", fmt)
        assert done.returncode == 2
        assert "aaaa1111" not in done.stdout and "bbbb2222" not in done.stdout and "backup" in done.stdout
        assert "api_keys" in done.stdout and "headers" in done.stdout
