"""`tollgate keys new` and `tollgate explain`."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_snapshot

ROOT = Path(__file__).resolve().parent.parent

BUNDLE = """\
schema = 1

[settings]
pricing = "lenient"

[[provider]]
id = "a"
kind = "mock"
models = ["m-small", "m-large", "gpt-4o"]

[[provider]]
id = "b"
kind = "mock"
models = ["m-large"]
priority = 1

[model.long]
targets = [{ provider = "a", model = "m-large", weight = 3 },
           { provider = "b", model = "m-large", priority = 0 }]
fallbacks = ["m-small"]

[price.m-large]
input = 1.0
output = 4.0

[group.free]
[group.pro]

[[key]]
id = "free-key"
hash = "sha256:35cf4e57583680e38f13af6d5f89ccc3e70ab1fc63bc540e5f80b74c003d1b58"
group = "free"
tags = ["t1"]

[[key]]
id = "pro-key"
hash = "sha256:cb3bd34870c1a3ceb24e9fc564d57d2acc7cf5e36a633f57f43b96f3227b0cfc"
group = "pro"
models = ["m-*", "long"]

[[rule]]
id = "tag-streams"
when = "request.stream"
add_tags = ["stream"]

[[rule]]
id = "no-gpt4-on-free"
when = 'key.group == "free" && request.model.startsWith("gpt-4")'
deny = "gpt-4 models are not available on the free tier"

[[rule]]
id = "pro-header"
when = 'key.group == "pro"'
set_headers = { "x-tier" = "pro" }

[[rule]]
id = "embeddings-need-project"
when = 'request.endpoint == "/v1/embeddings" && request.metadata.project == "x"'
deny = "not for project x"

[[rule]]
id = "long-chats"
when = "request.message_count > 40"
route = "long"
"""


# keys new ---------------------------------------------------------------------------------------


def parse_keys_new(out: str) -> tuple[str, dict[str, object], str]:
    first, _, entry = out.partition("\n\n")
    match = re.fullmatch(r"key \(shown once, store it now\): (tg-[A-Za-z0-9_-]{40,})", first)
    assert match, first
    return match.group(1), tomllib.loads(entry), entry


def test_keys_new_prints_a_key_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--id", "team-a", "--group", "pro"]) == 0
    secret, entry, text = parse_keys_new(capsys.readouterr().out)
    assert text.startswith("[[key]]\n")
    assert entry == {
        "key": [
            {
                "id": "team-a",
                "hash": "sha256:" + hashlib.sha256(secret.encode()).hexdigest(),
                "group": "pro",
            }
        ]
    }


def test_keys_new_entry_works_in_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--id", "team-a", "--group", "pro"]) == 0
    secret, _, entry = parse_keys_new(capsys.readouterr().out)
    assert main(["keys", "new", "--id", "ops", "--group", "ignored", "--admin"]) == 0
    admin_secret, admin_entry, admin_text = parse_keys_new(capsys.readouterr().out)
    assert admin_secret != secret
    assert list(admin_entry) == ["admin_key"] and "group" not in admin_text

    (tmp_path / "bundle.toml").write_text(
        'schema = 1\n[group.pro]\n\n' + entry + "\n" + admin_text
    )
    snap = load_snapshot(tmp_path, env={})
    assert snap.key_for(secret).id == "team-a"  # type: ignore[union-attr]
    assert snap.admin_for(admin_secret).id == "ops"  # type: ignore[union-attr]
    assert snap.key_for(admin_secret) is None


def test_keys_new_through_the_real_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "new", "--id", "ci"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secret, entry, _ = parse_keys_new(done.stdout)
    assert entry["key"] == [{"id": "ci", "hash": "sha256:" + hashlib.sha256(secret.encode()).hexdigest()}]


# explain ----------------------------------------------------------------------------------------


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "bundle.toml").write_text(BUNDLE)
    return tmp_path


def explain(capsys: pytest.CaptureFixture[str], bundle: Path, *args: str) -> tuple[int, str, str]:
    code = main(["explain", "--policies", str(bundle), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_route_with_rules(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, bundle, "--key", "pro-key", "--model", "m-small", "--messages", "50",
                           "--stream")
    assert code == 0
    assert out.splitlines() == [
        "key pro-key: group pro, tags []",
        "rules matched: tag-streams, pro-header, long-chats",
        "model rewritten: m-small -> long",
        "upstream header: x-tier: pro",
        "tags: stream",
        "route long (alias, weighted):",
        "  priority 0: a/m-large weight 3 (75%), $1.0/$4.0 per Mtok",
        "  priority 0: b/m-large weight 1 (25%), $1.0/$4.0 per Mtok",
        "fallback m-small (model, weighted):",
        "  priority 0: a/m-small weight 1 (100%), no price",
    ]


def test_explain_direct_model_tiers(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, bundle, "--key", "pro-key", "--model", "m-large")
    assert code == 0
    assert out.splitlines()[-3:] == [
        "route m-large (model, weighted):",
        "  priority 0: a/m-large weight 1 (100%), $1.0/$4.0 per Mtok",
        "  priority 1: b/m-large weight 1 (100%), $1.0/$4.0 per Mtok",
    ]


def test_explain_denied_by_rule(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, bundle, "--key", "free-key", "--model", "gpt-4o")
    assert code == 0
    assert out.splitlines() == [
        "key free-key: group free, tags ['t1']",
        "rules matched: no-gpt4-on-free",
        "DENIED by rule no-gpt4-on-free: gpt-4 models are not available on the free tier",
    ]


def test_explain_allow_list_comes_first(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # As in the gateway, a model outside the key's allow-list is refused before any rule runs.
    code, out, _ = explain(capsys, bundle, "--key", "pro-key", "--model", "gpt-4o", "--messages", "50")
    assert code == 0
    assert out.splitlines() == ["key pro-key: group pro, tags []", "DENIED: key pro-key may not use model gpt-4o"]


def test_explain_rule_error_fails_closed(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--key", "free-key", "--model", "m-small", "--endpoint", "/v1/embeddings")
    code, out, _ = explain(capsys, bundle, *args)
    assert code == 0
    assert out.splitlines()[1].startswith(
        "rule error (request refused): rule 'embeddings-need-project' failed: "
    )
    code, out, _ = explain(capsys, bundle, *args, "--metadata", "project=x")
    assert out.splitlines()[-1] == "DENIED by rule embeddings-need-project: not for project x"
    code, out, _ = explain(capsys, bundle, *args, "--metadata", "project=y")
    assert out.splitlines()[1:3] == ["rules matched: none", "route m-small (model, weighted):"]


def test_explain_errors(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(capsys, bundle, "--key", "nobody", "--model", "m-small")
    assert (code, out, err) == (1, "", 'no key with id "nobody"\n')

    code, out, err = explain(capsys, bundle, "--key", "pro-key", "--model", "m-small", "--metadata", "oops")
    assert (code, err) == (2, "--metadata takes KEY=VALUE, not 'oops'\n")

    (bundle / "bundle.toml").write_text(BUNDLE.replace('group = "pro"\nmodels', 'group = "por"\nmodels'))
    code, out, err = explain(capsys, bundle, "--key", "pro-key", "--model", "m-small")
    assert code == 1
    assert err == f'{bundle}/bundle.toml:38: key[1].group: unknown group "por"\n'
