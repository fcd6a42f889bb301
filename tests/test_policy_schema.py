"""schemas/policy.schema.json is generated from gateway/config/types.py and checked in: a
change to the types without `tollgate schema` fails here. Editors validate bundle files with it,
so it must accept every file the loader accepts (the examples, the default bundle, the corpus)
and reject those the loader's decoder rejects."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from gateway.cli import main
from gateway.commands import policy_schema
from gateway.config import types

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "policy.schema.json"


def rendered() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA.read_text() == rendered(), "stale schema: run `.venv/bin/tollgate schema`"


def test_schema_command_writes_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "policy.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text() == rendered()
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert main(["schema", "--out", "-"]) == 0
    assert capsys.readouterr().out == rendered()


def test_schema_is_strict_and_complete() -> None:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/BundleFile"
    defs = schema["$defs"]
    structs = [
        cls
        for cls in vars(types).values()
        if isinstance(cls, type) and issubclass(cls, types.Base) and cls is not types.Base
        and cls is not types.ProviderBase
    ]
    for cls in structs:
        definition = defs[cls.__name__]
        assert definition["additionalProperties"] is False, cls.__name__  # unknown fields are errors
        assert set(cls.__struct_fields__) <= set(definition["properties"]), cls.__name__
    kinds = defs["BundleFile"]["properties"]["provider"]["items"]["discriminator"]["mapping"]
    assert sorted(kinds) == [
        "anthropic", "azure", "bedrock", "gemini", "midjourney", "mock", "openai", "openai-compatible", "suno",
        "vertex",
    ]
    assert defs["BundleFile"]["required"] == ["schema"]


def test_schema_matches_what_the_loader_accepts() -> None:
    """Spot-check: a document the schema describes decodes, the same with a typo does not."""
    document = {
        "schema": 1,
        "provider": [{"id": "m", "kind": "mock", "models": ["a"]}],
        "key": [{"id": "k", "hash": "sha256:" + "0" * 64, "limits": {"rpm": 5}}],
    }
    msgspec.convert(document, type=types.BundleFile, strict=True)
    document["key"][0]["limits"] = {"rpn": 5}  # type: ignore[index]
    with pytest.raises(msgspec.ValidationError, match="unknown field `rpn`"):
        msgspec.convert(document, type=types.BundleFile, strict=True)


def policy_files() -> list[Path]:
    """Every bundle file in the repository: examples, the default bundle, the test corpus."""
    found = []
    for top in ("examples", "policies", "tests/bundle_cases"):
        for path in sorted((ROOT / top).rglob("*.toml")):
            if not any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                found.append(path)
    return found


FILES = policy_files()


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    # TOML dates and times become RFC 3339 strings, as the schema describes them.
    instance = msgspec.to_builtins(document)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_every_example_validates_against_the_schema() -> None:
    examples = [f for f in FILES if f.is_relative_to(ROOT / "examples")]
    assert {f.parent.name for f in examples} >= {"midjourney", "multi-provider", "tiers-and-budgets"}
    for path in [*examples, *(f for f in FILES if f.is_relative_to(ROOT / "policies"))]:
        assert schema_errors(tomllib.loads(path.read_text())) == [], path


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_agrees_with_the_decoder(path: Path) -> None:
    """Per file: the schema accepts exactly what `msgspec.convert(..., BundleFile)` accepts.
    Cross-references (unknown group, CEL, duplicates across files) are beyond a schema."""
    document = read_toml(path)
    if document is None:
        pytest.skip("not TOML: nothing for a schema to say")
    try:
        msgspec.convert(document, type=types.BundleFile, strict=True)
        decodes = True
    except msgspec.ValidationError:
        decodes = False
    errors = schema_errors(document)
    assert (errors == []) == decodes, errors


def test_the_corpus_has_schema_level_mistakes() -> None:
    rejected = {f.parent.name for f in FILES if "invalid" in f.parts and _rejected(f)}
    assert {"unknown_field_top", "unknown_field_nested", "wrong_type", "unknown_provider_kind",
            "missing_required_field", "missing_schema", "wrong_schema_version"} <= rejected


def _rejected(path: Path) -> bool:
    document = read_toml(path)
    return document is not None and bool(schema_errors(document))


def read_toml(path: Path) -> dict[str, Any] | None:
    """The file's document as the loader reads it (a UTF-8 byte order mark skipped); None when
    it is not UTF-8 or not TOML (the corpus has such files)."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
