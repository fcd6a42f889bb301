"""CEL expressions (compile, analysis, memo, run-time errors) and rule-set decisions."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import cel
from gateway.policy.cel import (
    PRICE_VARIABLES,
    RULE_VARIABLES,
    CelCompileError,
    CelEvalError,
    CompiledExpr,
    compile_expr,
)
from gateway.policy.context import Facts, KeyView, RequestView, UsageView
from gateway.policy.rules import NO_DECISION, CompiledRule, RuleFailed, RuleSet


class CountingProgram:
    """Wraps a cel-python program and counts the evaluations that reach it."""

    def __init__(self, program: Any) -> None:
        self.program, self.calls = program, 0

    def evaluate(self, activation: Any) -> Any:
        self.calls += 1
        return self.program.evaluate(activation)


def counted(source: str) -> tuple[CompiledExpr, CountingProgram]:
    expr = compile_expr(source, RULE_VARIABLES)
    counter = CountingProgram(expr.program)
    expr.program = counter
    return expr, counter


def facts(
    model: str = "m-small",
    *,
    group: str = "free",
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    message_count: int = 1,
    stream: bool = False,
    max_tokens: int = 0,
    spend: float = 0.0,
) -> Facts:
    request = RequestView(
        model=model,
        endpoint="/v1/chat/completions",
        stream=stream,
        message_count=message_count,
        max_tokens=max_tokens,
        metadata=metadata or {},
    )
    return Facts(request, KeyView("k1", group, tags or []), UsageView(spend_usd=spend))


# compile: what an expression reads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "refs"),
    [
        ('request.model == "x" && key.group == "free"', (("key", "group"), ("request", "model"))),
        ('request.model.startsWith("gpt-4")', (("request", "model"),)),
        ('"beta" in key.tags', (("key", "tags"),)),
        ('has(request.metadata.team) && request.metadata.team == "a"', (("request", "metadata"),)),
        ('key.tags.exists(t, t == "batch")', (("key", "tags"),)),  # `t` is the macro's, not a variable
        ("size(key) > 0", (("key", None),)),  # a root used whole is read whole
        ('key.id == "a" || size(key) > 3', (("key", None),)),  # ... and its fields come with it
        ("usage.budget_fraction > 0.8", (("usage", "budget_fraction"),)),
        ("now.getHours() < 6", (("now", None),)),
        ("true", ()),
        ("type(request.max_tokens) == int", (("request", "max_tokens"),)),  # type names are not variables
        ('.request.model == "x"', (("request", "model"),)),  # `.name`: the same variable, from the root
        ('key.tags.exists(t, t == .key.id)', (("key", "id"), ("key", "tags"))),
    ],
)
def test_refs(source: str, refs: tuple[tuple[str, str | None], ...]) -> None:
    assert compile_expr(source, RULE_VARIABLES).refs == refs


def test_price_variables() -> None:
    expr = compile_expr('tokens.prompt > 200000 && model == "m"', PRICE_VARIABLES)
    assert expr.refs == (("model", None), ("tokens", "prompt"))
    with pytest.raises(CelCompileError, match="undeclared variable `request`"):
        compile_expr('request.model == "m"', PRICE_VARIABLES)


def test_purity() -> None:
    assert compile_expr('key.group == "free"', RULE_VARIABLES).pure
    assert not compile_expr("now.getHours() < 6", RULE_VARIABLES).pure
    assert not compile_expr('key.group == "free" && now.getHours() < 6', RULE_VARIABLES).pure


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ('key.group == "free" && && request.stream', "syntax error: unexpected `&&`", 1, 24),
        ("request.model ==", "syntax error: unexpected end of expression", 1, 15),
        ('request.model == "a" #', "syntax error: unexpected character `#`", 1, 22),
        ('user.id == "bob"', "undeclared variable `user` (known: key, now, request, usage)", 1, 1),
        (
            'request.modle == "m"',
            "unknown field `request.modle` (known: endpoint, headers, ip, max_tokens, message_count, "
            "metadata, model, stream)",
            1,
            9,
        ),
        ('key.group == "free"\n  && usage.spend > 1', "unknown field `usage.spend`", 2, 12),
        ('.user == "bob"', "undeclared variable `user`", 1, 2),
        ('.request.modle == "m"', "unknown field `request.modle`", 1, 10),
    ],
)
def test_compile_errors_have_positions(source: str, message: str, line: int, column: int) -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expr(source, RULE_VARIABLES)
    assert caught.value.message.startswith(message)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert str(caught.value).endswith(f" at {line}:{column}")


def test_root_scoped_names_evaluate() -> None:
    expr = compile_expr('.request.model == "m-small" && .key.group == "free"', RULE_VARIABLES)
    assert expr.evaluate(facts().lookup) is True
    assert expr.evaluate(facts(group="pro").lookup) is False


def test_macro_variable_does_not_leak() -> None:
    # `t` is bound inside exists(); the same name outside it is an undeclared variable.
    with pytest.raises(CelCompileError, match="undeclared variable `t`"):
        compile_expr('key.tags.exists(t, t == "a") && t == "b"', RULE_VARIABLES)


# evaluate: memo, purity, errors ------------------------------------------------------------------


def test_pure_results_are_memoized_on_the_values_read() -> None:
    expr, program = counted('key.group == "free" && request.max_tokens > 1000')
    lookups: list[tuple[str, str | None]] = []

    def lookup(f: Facts) -> Any:
        def read(root: str, name: str | None) -> Any:
            lookups.append((root, name))
            return f.lookup(root, name)

        return read

    assert expr.evaluate(lookup(facts(max_tokens=2000))) is True
    assert expr.evaluate(lookup(facts(max_tokens=2000, model="other", stream=True))) is True  # memo hit
    assert program.calls == 1
    assert set(lookups) == {("key", "group"), ("request", "max_tokens")}  # nothing else is read
    assert expr.evaluate(lookup(facts(max_tokens=10))) is False
    assert expr.evaluate(lookup(facts(group="pro", max_tokens=2000))) is False
    assert program.calls == 3
    assert len(expr.memo) == 3


def test_impure_expressions_always_run() -> None:
    expr, program = counted('now.getFullYear() > 2000 && key.group == "free"')
    for _ in range(3):
        assert expr.evaluate(facts().lookup) is True
    assert program.calls == 3
    assert expr.memo == {}


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cel, "_MEMO_LIMIT", 3)
    expr, program = counted("request.max_tokens > 5")
    for n in range(10):
        expr.evaluate(facts(max_tokens=n).lookup)
    assert 0 < len(expr.memo) <= 3
    assert program.calls == 10


def test_compound_values_key_the_memo_by_content() -> None:
    expr, program = counted('"beta" in key.tags')
    assert expr.evaluate(facts(tags=["a", "beta"]).lookup) is True
    assert expr.evaluate(facts(tags=["a", "beta"]).lookup) is True
    assert expr.evaluate(facts(tags=["a"]).lookup) is False
    assert program.calls == 2


def test_memo_keeps_values_cel_tells_apart() -> None:
    """`1 == True == 1.0` in Python, not in CEL: a memo keyed on Python equality would hand the
    result computed for one client's `true` to another client's `1`."""
    expr = compile_expr("request.metadata.internal == true", RULE_VARIABLES)
    assert expr.evaluate(facts(metadata={"internal": True}).lookup) is True
    with pytest.raises(CelEvalError):
        expr.evaluate(facts(metadata={"internal": 1}).lookup)
    typed = compile_expr("type(request.metadata.x) == double", RULE_VARIABLES)
    assert typed.evaluate(facts(metadata={"x": 1.0}).lookup) is True
    assert typed.evaluate(facts(metadata={"x": 1}).lookup) is False
    pairs = compile_expr("size(request.metadata.x) == 1 && request.metadata.x.a == 1", RULE_VARIABLES)
    assert pairs.evaluate(facts(metadata={"x": {"a": 1}}).lookup) is True
    with pytest.raises(CelEvalError):
        pairs.evaluate(facts(metadata={"x": [["a", 1]]}).lookup)


@pytest.mark.parametrize(
    ("source", "fact"),
    [
        ('request.metadata.team == "a"', facts(metadata={})),  # no such key
        ("10 / request.max_tokens > 1", facts(max_tokens=0)),  # division by zero
        ("request.model + 1 == 2", facts()),  # no such overload
    ],
)
def test_runtime_errors_raise(source: str, fact: Facts) -> None:
    expr = compile_expr(source, RULE_VARIABLES)
    with pytest.raises(CelEvalError) as caught:
        expr.evaluate(fact.lookup)
    assert caught.value.args[0]
    assert "activation" not in str(caught.value)  # no dump of the request's values
    assert expr.memo == {}  # failures are not remembered


def test_results_are_python_values() -> None:
    assert compile_expr("request.max_tokens * 2", RULE_VARIABLES).evaluate(facts(max_tokens=21).lookup) == 42
    result = compile_expr('request.model + "-x"', RULE_VARIABLES).evaluate(facts(model="m").lookup)
    assert result == "m-x"
    assert type(result) is str


# rule sets --------------------------------------------------------------------------------------


def rule(rule_id: str, when: str, **action: Any) -> CompiledRule:
    if "set_headers" in action:
        action["set_headers"] = tuple(action["set_headers"].items())
    if "add_tags" in action:
        action["add_tags"] = tuple(action["add_tags"])
    return CompiledRule(id=rule_id, expr=compile_expr(when, RULE_VARIABLES), **action)


def ruleset(*rules: CompiledRule) -> RuleSet:
    return RuleSet.build(rules)


def test_first_decisive_rule_wins() -> None:
    rules = ruleset(
        rule("tag-free", 'key.group == "free"', add_tags=["free"]),
        rule("no-gpt4", 'key.group == "free" && request.model.startsWith("gpt-4")', deny="no gpt-4"),
        rule("long", "request.message_count > 40", route="claude-long"),
        rule("never-reached", "true", set_model="m-small"),
    )
    d = rules.evaluate(facts("gpt-4o", message_count=50).lookup)
    assert (d.deny, d.deny_rule, d.route, d.set_model) == ("no gpt-4", "no-gpt4", None, None)
    assert d.matched == ("tag-free", "no-gpt4")
    assert d.tags == ("free",)

    d = rules.evaluate(facts("m-large", group="pro", message_count=50).lookup)
    assert (d.deny, d.route, d.matched) == (None, "claude-long", ("long",))

    d = rules.evaluate(facts("m-large", group="pro").lookup)
    assert (d.set_model, d.matched) == ("m-small", ("never-reached",))


def test_headers_and_tags_accumulate() -> None:
    rules = ruleset(
        rule("h1", 'key.group == "pro"', set_headers={"x-team": "a", "x-tier": "pro"}),
        rule("t1", "request.stream", add_tags=["stream", "pro"]),
        rule("h2", "request.max_tokens > 100", set_headers={"x-team": "b"}),
        rule("t2", 'key.group == "pro"', add_tags=["pro", "paid"]),
        rule("off", 'key.group == "free"', add_tags=["free"]),
        rule("route", "request.message_count > 10", route="long"),
        rule("after", "true", add_tags=["after"]),
    )
    d = rules.evaluate(facts(group="pro", stream=True, max_tokens=500, message_count=20).lookup)
    assert d.matched == ("h1", "t1", "h2", "t2", "route")
    assert d.headers == (("x-team", "b"), ("x-tier", "pro"))  # a later rule overrides a header
    assert d.tags == ("stream", "pro", "paid")  # in order, without repeats
    assert d.route == "long"

    d = rules.evaluate(facts(group="pro").lookup)
    assert d.matched == ("h1", "t2", "after")
    assert (d.route, d.deny, d.set_model) == (None, None, None)
    assert d.tags == ("pro", "paid", "after")


def test_empty_rule_set() -> None:
    assert ruleset().evaluate(facts().lookup) is NO_DECISION


def test_runtime_error_fails_closed() -> None:
    rules = ruleset(
        rule("tag", "true", add_tags=["seen"]),
        rule("team", 'request.metadata.team == "blocked"', deny="team blocked"),
    )
    for _ in range(2):  # a failure is not memoized: it fails every time
        with pytest.raises(RuleFailed) as caught:
            rules.evaluate(facts(metadata={}).lookup)
        assert caught.value.rule_id == "team"
        assert "team" in caught.value.message
    assert rules.evaluate(facts(metadata={"team": "blocked"}).lookup).deny == "team blocked"
    assert rules.evaluate(facts(metadata={"team": "ok"}).lookup).deny is None


def test_non_bool_result_fails_closed() -> None:
    rules = ruleset(rule("count", "request.message_count", deny="?"))
    for _ in range(2):
        with pytest.raises(RuleFailed) as caught:
            rules.evaluate(facts(message_count=3).lookup)
        assert caught.value.rule_id == "count"
        assert caught.value.message == "`when` gave int, not a bool"
    assert str(caught.value) == "rule 'count' failed: `when` gave int, not a bool"


def test_memoized_decisions_match_fresh_ones() -> None:
    """A warm rule set (memo hits) decides exactly as a cold one does."""
    specs = [
        ("no-gpt4", 'key.group == "free" && request.model.startsWith("gpt-4")', {"deny": "no"}),
        ("beta", '"beta" in key.tags', {"set_headers": {"x-beta": "1"}}),
        ("long", "request.message_count > 5", {"route": "long"}),
        ("pro", 'key.group == "pro"', {"add_tags": ["pro"]}),
    ]
    warm = ruleset(*(rule(i, w, **a) for i, w, a in specs))
    stream = [
        facts(model, group=group, tags=tags, message_count=count)
        for model in ("gpt-4o", "m-small")
        for group in ("free", "pro")
        for tags in ([], ["beta"])
        for count in (1, 9)
    ]
    first = [warm.evaluate(f.lookup) for f in stream]
    again = [warm.evaluate(f.lookup) for f in stream]
    cold = [ruleset(*(rule(i, w, **a) for i, w, a in specs)).evaluate(f.lookup) for f in stream]
    assert first == again == cold


def test_impure_rules_see_the_time() -> None:
    rules = ruleset(rule("old", 'now < timestamp("2000-01-01T00:00:00Z")', deny="time travel"))
    assert rules.evaluate(facts().lookup).deny is None
    with_past = Facts(RequestView(), KeyView())
    from celpy import celtypes

    with_past._now = celtypes.TimestampType("1999-06-01T00:00:00Z")
    assert rules.evaluate(with_past.lookup).deny == "time travel"


def test_usage_is_visible_to_rules() -> None:
    rules = ruleset(rule("cap", "usage.spend_usd >= 10.0", deny="budget spent"))
    assert rules.evaluate(facts(spend=12.5).lookup).deny == "budget spent"
    assert rules.evaluate(facts(spend=1.0).lookup).deny is None


def test_an_unchanged_expression_reuses_its_parsed_program_with_a_fresh_memo() -> None:
    from gateway.policy.cel import RULE_VARIABLES, compile_expr

    a = compile_expr('key.group == "pro-cache-test"', RULE_VARIABLES)
    b = compile_expr('key.group == "pro-cache-test"', RULE_VARIABLES)
    c = compile_expr('key.group == "other-cache-test"', RULE_VARIABLES)
    assert a.program is b.program and a.refs == b.refs
    assert a.memo is not b.memo
    assert c.program is not a.program


def test_a_syntax_error_is_raised_every_time_not_cached() -> None:
    from gateway.policy.cel import RULE_VARIABLES, CelCompileError, compile_expr

    for _ in range(2):
        with pytest.raises(CelCompileError, match="syntax error"):
            compile_expr("key.group ==", RULE_VARIABLES)
