"""Large bundle files are parsed by rtoml (faster), small ones and every error by tomllib: both
must give the same document, and a syntax error in a large file is reported as tomllib words it."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from gateway.config import BundleError, load_snapshot
from gateway.config.load import _RTOML_FROM, _parse_toml

FEATURES = '''schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "p"
kind = "mock"
models = ["m"]
'''


def big_keys(n: int, expires: str = "2030-01-01T00:00:00+02:00") -> str:
    lines = []
    for i in range(n):
        lines.append(f'[[key]]\nid = "k{i}"\nhash = "sha256:{i:064x}"\nexpires = {expires}\n'
                     f'tags = ["a", "b\\tc", """multi\nline"""]\nmodels = ["m*"]\n')
    return "\n".join(lines)


def test_a_large_file_parses_as_tomllib_parses_it() -> None:
    text = FEATURES + big_keys(400)
    assert len(text) > _RTOML_FROM
    assert _parse_toml(text) == tomllib.loads(text)  # aware datetimes compare as instants


def test_a_large_bundle_keeps_key_expiry_semantics(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(FEATURES + big_keys(400, "2001-01-01T00:00:00+02:00"))
    key = next(iter(load_snapshot(tmp_path).keys_by_hash.values()))
    assert key.expires is not None and key.expires < dt.datetime.now(dt.UTC)
    assert key.expires.utcoffset() == dt.timedelta(hours=2)


def test_a_syntax_error_in_a_large_file_is_reported_by_line(tmp_path: Path) -> None:
    text = FEATURES + big_keys(400) + "\nbroken = \n"
    (tmp_path / "a.toml").write_text(text)
    with pytest.raises(BundleError) as err:
        load_snapshot(tmp_path)
    line = text.count("\n")  # the last line holds the error
    assert f"a.toml:{line}: TOML syntax error: " in str(err.value)
