"""The bundle corpus: every case under tests/bundle_cases/ through `load_snapshot` and, for a
few, through the real `tollgate check` process.

An invalid case is a small bundle with one kind of mistake and an `expected.txt` holding the
exact lines `tollgate check` prints for it, run from the repository root with the case's
relative path (so the file names in the messages are stable). To add a case: write the bundle,
run `.venv/bin/tollgate check tests/bundle_cases/invalid/<case> > .../expected.txt` and read
the message as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import BundleError, Snapshot, load_snapshot

ROOT = Path(__file__).resolve().parent.parent
CASES = Path("tests") / "bundle_cases"  # relative to ROOT, as the messages show it
INVALID = sorted(p.name for p in (ROOT / CASES / "invalid").iterdir() if p.is_dir())
VALID = sorted(p.name for p in (ROOT / CASES / "valid").iterdir() if p.is_dir())

# Every case sees exactly this environment, never the developer's or CI's.
ENV: dict[str, str] = {"TG_TEST_OPENAI_KEY": "sk-test-1"}


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(ROOT)
    yield


def expected_lines(case: str) -> list[str]:
    return (ROOT / CASES / "invalid" / case / "expected.txt").read_text().splitlines()


def problems_of(directory: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(BundleError) as caught:
        load_snapshot(directory, env=ENV if env is None else env)
    return [str(p) for p in caught.value.problems]


def test_corpus_covers_every_error_kind() -> None:
    assert len(INVALID) >= 30
    for case in INVALID:
        lines = expected_lines(case)
        assert lines, f"{case}: empty expected.txt"
        prefix = f"{CASES / 'invalid' / case}/"
        assert all(line.startswith(prefix) for line in lines), case


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case(case: str) -> None:
    assert problems_of(CASES / "invalid" / case) == expected_lines(case)


def test_every_invalid_problem_has_a_line() -> None:
    # A message without a line number sends the user hunting; only file-level ones may lack it.
    for case in INVALID:
        for line in expected_lines(case):
            where = line.split(": ", 1)[0]
            assert where.rsplit(":", 1)[-1].isdigit(), line


def test_empty_bundle_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("no toml here\n")
    assert problems_of(tmp_path) == [f"{tmp_path}: bundle has no *.toml files"]


def test_missing_bundle_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert problems_of(missing) == [f"{missing}: bundle directory does not exist"]


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("schema = 1\n")
    (tmp_path / "b.toml").symlink_to(tmp_path / "gone.toml")  # dangling, as mid-checkout
    assert problems_of(tmp_path) == [f"{tmp_path}/b.toml: cannot read file: No such file or directory"]


def test_missing_env_is_allowed_for_ci() -> None:
    snap = load_snapshot(CASES / "invalid" / "missing_env_var", env={}, allow_missing_env=True)
    assert snap.providers["openai"].api_keys == ("<TG_TEST_OPENAI_KEY_1>", "<TG_TEST_OPENAI_KEY_2>")
    # A base_url that is all placeholder is not "missing http://": CI without secrets passes.
    assert snap.providers["vllm"].base_url == "<TG_TEST_VLLM_URL>"
    with pytest.raises(BundleError, match="must start with http"):
        load_snapshot(CASES / "invalid" / "missing_env_var", env={"TG_TEST_VLLM_URL": "gpu:8000"},
                      allow_missing_env=True)


def test_problem_locations_follow_the_edit(tmp_path: Path) -> None:
    """Inserting lines above a mistake moves its reported line with it."""
    source = ROOT / CASES / "invalid" / "unknown_group"
    for f in source.glob("*.toml"):
        text = f.read_text()
        if f.name == "keys.toml":
            text = text.replace("schema = 1\n", "schema = 1\n# one\n# two\n# three\n", 1)
        (tmp_path / f.name).write_text(text)
    assert problems_of(tmp_path) == [f'{tmp_path}/keys.toml:9: key[0].group: unknown group "prp"']


# valid cases ------------------------------------------------------------------------------------


def check_multi_file_merge(snap: Snapshot) -> None:
    assert set(snap.providers) == {"mock-a", "mock-b"}
    assert set(snap.keys_by_id) == {"alpha", "beta"}
    assert [r.id for r in snap.rules.rules] == ["free-no-large", "long-to-smart"]
    assert snap.settings.timezone == "Europe/Berlin"
    assert snap.routes["fast"].fallbacks == ("smart", "m-small")
    assert [[(t.provider, t.weight) for t in tier] for tier in snap.routes["fast"].tiers] == [
        [("mock-a", 3)],
        [("mock-b", 1)],
    ]
    assert snap.price_for("mock-b", "m-small").rates.input == 0.05  # type: ignore[union-attr]
    assert snap.price_for("mock-a", "m-small").rates.input == 0.1  # type: ignore[union-attr]
    assert len(snap.admins_by_hash) == 1
    assert snap.keys_by_id["beta"].group is snap.groups["free"]
    assert snap.warnings == ()


def check_lenient_pricing(snap: Snapshot) -> None:
    assert snap.settings.pricing == "lenient"
    assert snap.price_for("vllm", "llama-3.1-8b") is None
    assert snap.warnings == (
        "tests/bundle_cases/valid/lenient_pricing/bundle.toml:10: provider[0].models[0]: "
        'no price for model "llama-3.1-8b": its usage is recorded with cost NULL',
    )


def check_env_defaults(snap: Snapshot) -> None:
    openai = snap.providers["openai"]
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_keys == ("sk-test-1", "sk-fallback")
    assert openai.headers == (("openai-organization", "org-default"),)  # names lower-cased


def check_globs(snap: Snapshot) -> None:
    basic, gpt_only, anything = (snap.keys_by_id[k] for k in ("basic", "gpt-only", "anything"))
    assert [m for m in snap.routes if basic.allows_model(m)] == ["gpt-4o-mini", "fast"]
    assert snap.models_for(gpt_only) == ["gpt-4o", "gpt-4o-mini"]
    assert snap.models_for(anything) == sorted(snap.routes)


def check_alias_refines_model(snap: Snapshot) -> None:
    route = snap.routes["gpt-4o"]  # the alias replaces the direct route, with its own shape
    assert route.is_alias and route.fallbacks == ("gpt-4o-mini",)
    assert [[(t.provider, t.model, t.weight) for t in tier] for tier in route.tiers] == [
        [("openai", "gpt-4o", 3)],
        [("azure", "gpt-4o-eu", 1)],
    ]
    assert not snap.routes["gpt-4o-mini"].is_alias


def check_utf8_bom(snap: Snapshot) -> None:
    # The byte order mark is skipped without shifting lines; UTF-8 text decodes as such.
    assert sorted(snap.routes) == ["m-small", "m-été"]
    assert snap.warnings == (
        "tests/bundle_cases/valid/utf8_bom/providers.toml:10: provider[0].models[1]: "
        'no price for model "m-été": its usage is recorded with cost NULL',
    )


def check_header_case(snap: Snapshot) -> None:
    assert snap.providers["vllm"].headers == (("x-team", "provider"), ("openai-organization", "org-1"))
    assert [r.set_headers for r in snap.rules.rules] == [
        (("x-team", "rule-1"),),
        (("x-team", "rule-2"), ("x-priority", "high")),
    ]


VALID_CHECKS: dict[str, Callable[[Snapshot], None]] = {
    "multi_file_merge": check_multi_file_merge,
    "lenient_pricing": check_lenient_pricing,
    "env_defaults": check_env_defaults,
    "globs": check_globs,
    "alias_refines_model": check_alias_refines_model,
    "utf8_bom": check_utf8_bom,
    "header_case": check_header_case,
}


@pytest.mark.parametrize("case", VALID)
def test_valid_case(case: str) -> None:
    snap = load_snapshot(CASES / "valid" / case, env=ENV)
    VALID_CHECKS[case](snap)


def test_env_values_override_defaults() -> None:
    env = {
        "TG_TEST_OPENAI_KEY": "sk-1",
        "TG_TEST_OPENAI_KEY_2": "sk-2",
        "TG_TEST_OPENAI_URL": "http://127.0.0.1:9/v1/",
        "TG_TEST_OPENAI_ORG": "org-7",
    }
    openai = load_snapshot(CASES / "valid" / "env_defaults", env=env).providers["openai"]
    assert (openai.base_url, openai.api_keys) == ("http://127.0.0.1:9/v1", ("sk-1", "sk-2"))
    assert openai.headers == (("openai-organization", "org-7"),)
    assert "sk-1" not in repr(openai)


def test_env_value_without_default_is_required() -> None:
    assert problems_of(CASES / "valid" / "env_defaults", env={}) == [
        "tests/bundle_cases/valid/env_defaults/bundle.toml:10: provider[0].api_keys[0]: "
        "environment variable TG_TEST_OPENAI_KEY is not set"
    ]


def test_header_value_from_env_is_checked_after_interpolation() -> None:
    problems = problems_of(CASES / "invalid" / "bad_header_value", env={"TG_TEST_TEAM": "a\nsecret"})
    assert problems == [
        "tests/bundle_cases/invalid/bad_header_value/providers.toml:12: provider[0].headers.X-Team: "
        "a header value must be one line of text (no CR, LF or control characters)",
        *expected_lines("bad_header_value"),
    ]
    assert not any("secret" in p for p in problems)  # the value is not echoed


def test_invalid_utf8_is_located_after_a_bom_and_multibyte_text(tmp_path: Path) -> None:
    # Offsets count the file's bytes (BOM included); the column counts characters on the line.
    data = b"\xef\xbb\xbfschema = 1\n# caf\xc3\xa9 \xff\n"
    (tmp_path / "a.toml").write_bytes(data)
    offset = data.index(b"\xff")
    assert offset == 22
    assert problems_of(tmp_path) == [
        f"{tmp_path}/a.toml:2: file is not UTF-8: byte 0xff at offset {offset} (column 8) "
        "cannot be decoded (invalid start byte); save it as UTF-8"
    ]


def test_a_bom_is_skipped_once(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfschema = 1\n")
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}/a.toml:1: TOML syntax error: ")


def test_utf32_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_bytes("schema = 1\n".encode("utf-32"))
    assert problems_of(tmp_path) == [
        f"{tmp_path}/a.toml:1: file is UTF-32 (it starts with a UTF-32 byte order mark); save it as UTF-8"
    ]


def test_every_valid_case_is_checked() -> None:
    assert sorted(VALID_CHECKS) == VALID


# the real CLI ---------------------------------------------------------------------------------


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", ["unknown_group", "cel_syntax_error", "duplicate_key_id"])
def test_cli_invalid_text(case: str) -> None:
    done = run_check(str(CASES / "invalid" / case))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == expected_lines(case)
    assert "bundle is invalid" in done.stderr


def test_cli_invalid_json() -> None:
    done = run_check("--format", "json", str(CASES / "invalid" / "unknown_group"))
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {
        "valid": False,
        "problems": [
            {
                "file": "tests/bundle_cases/invalid/unknown_group/keys.toml",
                "line": 6,
                "path": "key[0].group",
                "message": 'unknown group "prp"',
                "severity": "error",
            }
        ],
    }


def test_cli_valid_text_and_json() -> None:
    done = run_check(str(CASES / "valid" / "multi_file_merge"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: tests/bundle_cases/valid/multi_file_merge revision ")
    assert "2 providers, 4 models, 2 keys, 2 rules" in done.stdout

    done = run_check("--format", "json", str(CASES / "valid" / "lenient_pricing"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["valid"] is True
    assert len(summary["warnings"]) == 1


def test_cli_missing_env() -> None:
    case = str(CASES / "invalid" / "missing_env_var")
    assert run_check(case).returncode == 1
    assert run_check("--allow-missing-env", case).returncode == 0


def test_cli_empty_directory(tmp_path: Path) -> None:
    done = run_check(str(tmp_path))
    assert done.returncode == 1
    assert done.stdout.strip() == f"{tmp_path}: bundle has no *.toml files"


@pytest.mark.parametrize("culprit", [0, 1, 1234, 1999])
def test_error_inside_a_large_table_names_its_entry(tmp_path: Path, culprit: int) -> None:
    """msgspec elides table keys in its error paths (`group[...]`); the loader finds the entry."""
    lines = ["schema = 1"]
    for i in range(2000):
        lines += [f"[group.g{i}]", "limits = { rpm = 5 }"]
        if i == culprit:
            lines.append('model_limits = { "m-a" = { rpm = 1 }, "m-b" = { rpm = 2, tmp = 3 } }')
    (tmp_path / "groups.toml").write_text("\n".join(lines) + "\n")
    line = 2 + 2 * culprit + 2
    assert problems_of(tmp_path) == [
        f'{tmp_path}/groups.toml:{line}: group.g{culprit}.model_limits.m-b.tmp: unknown field '
        '(did you mean "tpm"?)'
    ]
