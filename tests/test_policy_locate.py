"""LineIndex: field paths of a TOML source mapped to the line where each starts."""

from __future__ import annotations

import tomllib

import pytest

from gateway.config.locate import LineIndex, split_key

SOURCE = '''\
schema = 1
# [[key]] a comment is not a header
# id = "not-a-key"

[settings]
pricing = "strict"
[settings.routing]          # a header with a comment
retry_on = [429, 503]
breaker.failures = 5        # a dotted key

[[provider]]
id = "mock"
kind = "mock"
models = [
  "m-small",
  "m-large",
]
timeouts = { connect = 5, read = 60 }

[[provider]]
id = "openai"
kind = "openai"
headers = { "OpenAI-Organization" = "org" }
"quoted key" = 1

[model.fast]
description = """
A multi-line string.
id = "this is text, not a key"
[[key]]
"""
targets = [
  { provider = "mock", model = "m-small" },
]
fallbacks = ["smart"]

[price."gpt-4o-mini"]
input = 0.15
[[price."gpt-4o-mini".tiers]]
when = "tokens.prompt > 1000"
[[price."gpt-4o-mini".tiers]]
when = 'tokens.prompt > 2000'

[[key]]
id = "a"
[key.limits]
rpm = 10
[[key]]
id = "b"
'literal.key' = 2
notes = \'\'\'
rpm = 1
\'\'\'
[key.limits]
rpm = 20
'''


@pytest.fixture(scope="module")
def index() -> LineIndex:
    tomllib.loads(SOURCE)  # the fixture itself is valid TOML
    return LineIndex(SOURCE)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("schema",), 1),
        (("settings",), 5),
        (("settings", "pricing"), 6),
        (("settings", "routing"), 7),
        (("settings", "routing", "retry_on"), 8),
        (("settings", "routing", "retry_on", 1), 8),  # inside an array: the array's line
        (("settings", "routing", "breaker", "failures"), 9),
        (("settings", "routing", "breaker"), 9),
        (("provider",), 11),  # an array of tables starts at its first element
        (("provider", 0), 11),
        (("provider", 0, "kind"), 13),
        (("provider", 0, "models", 1), 14),  # a multi-line array: the line it starts on
        (("provider", 0, "timeouts", "read"), 18),  # inside an inline table
        (("provider", 1), 20),
        (("provider", 1, "id"), 21),
        (("provider", 1, "headers", "OpenAI-Organization"), 23),
        (("provider", 1, "quoted key"), 24),
        (("model", "fast"), 26),
        (("model", "fast", "description"), 27),
        (("model", "fast", "targets", 0, "provider"), 32),
        (("model", "fast", "fallbacks"), 35),  # after the multi-line string and array
        (("price", "gpt-4o-mini"), 37),
        (("price", "gpt-4o-mini", "input"), 38),
        (("price", "gpt-4o-mini", "tiers", 0), 39),
        (("price", "gpt-4o-mini", "tiers", 1, "when"), 42),
        (("key", 0, "id"), 45),
        (("key", 0, "limits", "rpm"), 47),  # [key.limits] belongs to the last [[key]]
        (("key", 1), 48),
        (("key", 1, "literal.key"), 50),
        (("key", 1, "notes"), 51),
        (("key", 1, "limits"), 54),
        (("key", 1, "limits", "rpm"), 55),  # not the `rpm = 1` inside the string
    ],
)
def test_line_of(index: LineIndex, path: tuple[str | int, ...], line: int) -> None:
    assert index.line_of(path) == line


def test_unknown_paths(index: LineIndex) -> None:
    assert index.line_of(("nope",)) is None
    assert index.line_of(()) is None
    assert index.line_of(("key", 7, "id")) == index.line_of(("key",))  # nearest known ancestor
    assert index.line_of(("model", "fast", "id")) == 26  # text in the string is not a key
    assert index.line_of(("key", 2)) == 44


def test_first_definition_wins() -> None:
    # A duplicate key is a TOML error; the index points at the first one (the one kept).
    assert LineIndex("a = 1\nb = 2\na = 3\n").line_of(("a",)) == 1


def test_crlf_and_indentation() -> None:
    index = LineIndex("schema = 1\r\n\r\n  [[rule]]\r\n  id = 'x'\r\n  when = 'true'\r\n")
    assert index.line_of(("rule", 0, "when")) == 5


def test_empty_source() -> None:
    assert LineIndex("").line_of(("schema",)) is None


@pytest.mark.parametrize(
    ("dotted", "parts"),
    [
        ("a.b.c", ["a", "b", "c"]),
        ('price."gpt-4o-mini"', ["price", "gpt-4o-mini"]),
        ("price.'a.b'", ["price", "a.b"]),
        ('a . "b c" . d', ["a", "b c", "d"]),
        (r'"x\"y"', ['x"y']),
        ('"caf\\u00e9"', ["café"]),
    ],
)
def test_split_key(dotted: str, parts: list[str]) -> None:
    assert split_key(dotted) == parts


def test_non_ascii_quoted_keys() -> None:
    source = 'schema = 1\n[group."équipe"]\nlimits = { rpm = 1 }\n[price."模型"]\ninput = 1\n'
    tomllib.loads(source)
    index = LineIndex(source)
    assert index.line_of(("group", "équipe", "limits", "rpm")) == 3
    assert index.line_of(("price", "模型", "input")) == 5
    assert split_key('"équipe"."a\\u00e9"') == ["équipe", "aé"]


# Each source has a decoy `[[key]]` or `x = ` inside a string; `key[1].group` is on the last line.
STRING_SOURCES = {
    "multi-line string in a multi-line array": '''\
[[key]]
tags = [
  """first
[[key]]
x = 1
""",
  \'\'\'second
[[key]]\'\'\',
]
''',
    "delimiters inside single-line strings and comments": '''\
[[key]]
a = "it's \'\'\' here"  # and \""" here
b = 'say """'
''',
    "escaped quotes and extra closing quotes": '''\
[[key]]
a = """ends with \\""" still open
[[key]]
two quotes close it: \""""
c = \'\'\'x
[[key]]
\'\'\'\'\'
''',
    "two strings on one line": '''\
[[key]]
tags = ["""a""", """b
[[key]]
""", \'\'\'c\'\'\']
''',
}


@pytest.mark.parametrize("source", STRING_SOURCES.values(), ids=STRING_SOURCES.keys())
def test_headers_inside_strings_are_text(source: str) -> None:
    source += '[[key]]\ngroup = "g"\n'
    document = tomllib.loads(source)
    assert len(document["key"]) == 2 and document["key"][1] == {"group": "g"}
    last = source.count("\n")
    index = LineIndex(source)
    assert index.line_of(("key", 1, "group")) == last
    assert index.line_of(("key", 1)) == last - 1
