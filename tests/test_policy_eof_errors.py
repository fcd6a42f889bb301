"""A syntax error at the end of a file (an unclosed array on the last line, a key with no value,
no trailing newline) is placed on the last non-blank line: tomllib says only "at end of
document", which left `tollgate check` without a line. Small files are parsed by tomllib, large
ones by rtoml first (its errors are reported as tomllib words them): both are covered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.load import _RTOML_FROM

# (tail of the file, line of the error counted in the tail, column, message)
CASES = [
    ("x = [1, 2", 1, 10, "Unclosed array"),
    ("x = [1, 2\n", 1, 10, "Unclosed array"),
    ("x = [\n  1,\n  2,\n", 3, 5, "Invalid value"),
    ("x = [1,\r\n\r\n\n  \n", 1, 8, "Invalid value"),  # CRLF, blank lines after
    ("x = [1, # the end", 1, 18, "Invalid value"),
    ("x = {a = [1", 1, 12, "Unclosed array"),
    ("x = {a = 1", 1, 11, "Unclosed inline table"),
    ('x = "abc', 1, 9, "Unterminated string"),
    ('x = """abc\nmore', 2, 5, "Unterminated string"),
    ("x = '''abc\nmore\n", 2, 5, 'Expected "\'\'\'"'),
    ('x = "abc\\', 1, 10, "Unescaped '\\' in a string"),
    ("x =", 1, 4, "Invalid value"),
    ("x = ", 1, 4, "Invalid value"),
    ("x", 1, 2, "Expected '=' after a key in a key/value pair"),
    ("x.", 1, 3, "Invalid initial character for a key part"),
    ('"x', 1, 3, "Unterminated string"),
    ("[a", 1, 3, "Expected ']' at the end of a table declaration"),
    ("[[a", 1, 4, "Expected ']]' at the end of an array declaration"),
]

SMALL = "schema = 1\n"
LARGE = SMALL + "".join(f'k{i} = "{"v" * 40}"\n' for i in range(900))


def write(tmp_path: Path, prefix: str, tail: str) -> Path:
    text = prefix + tail
    assert (len(text) >= _RTOML_FROM) == (prefix is LARGE)  # large files do go through rtoml
    (tmp_path / "b.toml").write_bytes(text.encode())  # as is: no newline translation
    return tmp_path / "b.toml"


@pytest.mark.parametrize("prefix", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize(("tail", "line", "column", "message"), CASES)
def test_an_error_at_the_end_names_the_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefix: str, tail: str, line: int, column: int,
    message: str,
) -> None:
    path = write(tmp_path, prefix, tail)
    line += prefix.count("\n")
    expected = f"TOML syntax error: {message} at the end of the file (column {column})"

    assert main(["check", str(tmp_path)]) == 1
    assert capsys.readouterr().out == f"{path}:{line}: {expected}\n"

    assert main(["check", str(tmp_path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == {"valid": False, "problems": [
        {"file": str(path), "line": line, "path": "", "message": expected, "severity": "error"}
    ]}


@pytest.mark.parametrize("prefix", [SMALL, LARGE], ids=["small", "large"])
def test_an_error_before_the_end_keeps_tomllib_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    path = write(tmp_path, prefix, "x = {a = 1\n")  # tomllib stops at the newline, not at the end
    assert main(["check", str(tmp_path)]) == 1
    line = prefix.count("\n") + 1
    assert capsys.readouterr().out == f"{path}:{line}: TOML syntax error: Unclosed inline table (column 11)\n"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_unicode_line_separators_do_not_shift_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], separator: str
) -> None:
    """TOML allows them in comments and strings, and ends lines at line feeds only."""
    (tmp_path / "a.toml").write_text(
        f'schema = 1\n# a{separator}comment\n[[provider]]\nid = "p"  # {separator}{separator}\nkind = "mock"\n'
        'models = ["m"]\nmodles = 1\n'
    )
    assert main(["check", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith(f"{tmp_path}/a.toml:7: provider[0].modles: unknown field")
