"""CEL expressions: compiled once at load, analysed for what they read, memoized when pure.

cel-python evaluates in ~200 µs, too slow for 20 rules per request. At compile time each
expression is walked for the variables and fields it references; evaluation builds only those
into the activation, and results are memoized keyed on the referenced values. An expression
that reads `now` is impure and always evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from . import cel_parser
from .memo_key import hashable

# What rules may read: root -> its fields (an empty set means a scalar such as `now`).
RULE_VARIABLES: Mapping[str, frozenset[str]] = {
    "request": frozenset(
        {"model", "endpoint", "stream", "message_count", "max_tokens", "metadata", "headers", "ip"}
    ),
    "key": frozenset({"id", "group", "tags"}),
    "usage": frozenset({"spend_usd", "budget_usd", "budget_fraction", "rpm", "tpm"}),
    "now": frozenset(),
}
# What an alias's `affinity` may read (evaluated after admission, before the upstream call).
AFFINITY_VARIABLES: Mapping[str, frozenset[str]] = {
    "request": RULE_VARIABLES["request"],
    "key": RULE_VARIABLES["key"],
}
PRICE_VARIABLES: Mapping[str, frozenset[str]] = {
    "tokens": frozenset({"prompt", "completion", "cached", "total"}),
    "model": frozenset(),
}
IMPURE_ROOTS = frozenset({"now"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# CEL's type denotations (`type(x) == double`) are identifiers, not variables.
_TYPE_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)
_IDENT_NODES = frozenset({"ident", "dot_ident"})
_MEMO_LIMIT = 4096

Ref = tuple[str, str | None]  # (root, field) ; field None = the whole root
Lookup = Callable[[str, str | None], Any]

_env: celpy.Environment | None = None


def environment() -> celpy.Environment:
    """One shared Environment: creating one costs ~150 ms."""
    global _env
    if _env is None:
        cel_parser.install()  # the grammar analysis from Lark's cache, not redone per process
        _env = celpy.Environment()
    return _env


class CelCompileError(Exception):
    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message, self.line, self.column = message, line, column
        where = f" at {line}:{column}" if line is not None else ""
        super().__init__(f"{message}{where}")


class CelEvalError(Exception):
    pass


@dataclass
class CompiledExpr:
    source: str
    program: Any
    refs: tuple[Ref, ...]
    pure: bool
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def evaluate(self, lookup: Lookup) -> Any:
        values = tuple(lookup(root, name) for root, name in self.refs)
        if not self.pure:
            return self.run(values)
        key = tuple(hashable(v) for v in values)
        try:
            return self.memo[key]
        except KeyError:
            return self.remember(key, self.run(values))

    def remember(self, key: Any, result: Any) -> Any:
        if len(self.memo) >= _MEMO_LIMIT:
            self.memo.clear()  # bounded; a cold refill is cheaper than LRU bookkeeping
        self.memo[key] = result
        return result

    def run(self, values: tuple[Any, ...]) -> Any:
        activation: dict[str, Any] = {}
        for (root, name), value in zip(self.refs, values, strict=True):
            if name is None:
                activation[root] = to_cel(value)
            else:
                activation.setdefault(root, celtypes.MapType())[celtypes.StringType(name)] = to_cel(value)
        try:
            result = self.program.evaluate(activation)
        except Exception as exc:  # cel-python raises assorted types; all mean "failed"
            raise CelEvalError(_short(exc)) from None
        if isinstance(result, CELEvalError):
            raise CelEvalError(_short(result))
        return from_cel(result)


# Parsed programs by (source, variables): a reload of a large bundle re-parses only the rules that
# changed (lark parsing is most of a bundle's compile time). Programs are only evaluated on the
# event loop's thread, so old and new snapshots may share one; each gets its own memo.
_PROGRAMS: dict[tuple[str, tuple[tuple[str, frozenset[str]], ...]], tuple[Any, tuple[Ref, ...], bool]] = {}
_PROGRAMS_LIMIT = 20_000


def compile_expr(source: str, variables: Mapping[str, frozenset[str]]) -> CompiledExpr:
    key = (source, tuple(sorted(variables.items())))
    found = _PROGRAMS.get(key)
    if found is None:
        found = _compile(source, variables)
        if len(_PROGRAMS) >= _PROGRAMS_LIMIT:
            _PROGRAMS.clear()
        _PROGRAMS[key] = found
    program, refs, pure = found
    return CompiledExpr(source=source, program=program, refs=refs, pure=pure)


def _compile(source: str, variables: Mapping[str, frozenset[str]]) -> tuple[Any, tuple[Ref, ...], bool]:
    env = environment()
    try:
        tree = env.compile(source)
    except CELParseError as exc:
        line, col = getattr(exc, "line", None), getattr(exc, "column", None)
        raise CelCompileError(f"syntax error: {_syntax_problem(exc)}", line, col) from None
    refs = _analyse(tree, variables)
    pure = not any(root in IMPURE_ROOTS for root, _ in refs)
    return env.program(tree), refs, pure


def _syntax_problem(exc: CELParseError) -> str:
    """What the parser tripped on (cel-python's own message is only the source and a caret)."""
    cause = exc.__context__
    if isinstance(cause, UnexpectedToken):
        if cause.token.type == "$END":
            return "unexpected end of expression"
        return f"unexpected `{cause.token}`"
    if isinstance(cause, UnexpectedCharacters):
        return f"unexpected character `{cause.char}`"
    first = str(exc.args[0]).splitlines()[0] if exc.args else ""
    return first.strip() or "invalid expression"


def _analyse(tree: Tree[Any], variables: Mapping[str, frozenset[str]]) -> tuple[Ref, ...]:
    bound = _macro_bound_tokens(tree)
    refs: set[Ref] = set()
    dotted: set[int] = set()  # ident tokens used as `root.field`
    for node in tree.find_data("member_dot"):
        inner, name = node.children[0], cast(Token, node.children[1])
        root = _ident_of(inner)
        if root is None or root[0] not in variables or id(root[1]) in bound:
            continue
        fields = variables[root[0]]
        if not fields:
            continue
        if str(name) not in fields:
            raise CelCompileError(
                f"unknown field `{root[0]}.{name}` (known: {', '.join(sorted(fields))})",
                name.line,
                name.column,
            )
        dotted.add(id(root[1]))
        refs.add((root[0], str(name)))
    whole: set[str] = set()
    # `.name` (dot_ident) is `name` looked up from the root scope: the same variable.
    for node in tree.find_pred(lambda t: t.data in _IDENT_NODES):
        token = cast(Token, node.children[0])
        ident = str(token)
        if id(token) in bound or (ident in _TYPE_NAMES and ident not in variables):
            continue
        if ident not in variables:
            known = ", ".join(sorted(variables))
            raise CelCompileError(f"undeclared variable `{ident}` (known: {known})", token.line, token.column)
        if id(token) not in dotted:
            whole.add(ident)
    # A root used whole makes its per-field refs redundant.
    kept = {r for r in refs if r[0] not in whole} | {(root, None) for root in whole}
    return tuple(sorted(kept, key=lambda r: (r[0], r[1] or "")))


def _ident_of(member: Any) -> tuple[str, Token] | None:
    if isinstance(member, Tree) and member.data == "member" and len(member.children) == 1:
        primary = member.children[0]
        if isinstance(primary, Tree) and primary.data == "primary":
            ident = primary.children[0]
            if isinstance(ident, Tree) and ident.data in _IDENT_NODES:
                token = cast(Token, ident.children[0])
                return str(token), token
    return None


def _macro_bound_tokens(tree: Tree[Any]) -> set[int]:
    """The identifier tokens (by id) that name a macro's variable, e.g. both `t` in
    `key.tags.exists(t, t == "a")`; the same name outside the macro's arguments is unbound."""
    bound: set[int] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) == 3:
            method, args = node.children[1], node.children[2]
            if str(method) in _MACROS and isinstance(args, Tree) and args.children:
                name = _expr_ident(args.children[0])
                if name is None:
                    continue
                for sub in args.iter_subtrees():
                    if sub.data == "ident" and str(sub.children[0]) == name:
                        bound.add(id(sub.children[0]))
    return bound


def _expr_ident(expr: Any) -> str | None:
    idents = (
        [n for n in expr.iter_subtrees() if isinstance(n, Tree) and n.data == "ident"]
        if isinstance(expr, Tree)
        else []
    )
    return str(idents[0].children[0]) if len(idents) == 1 else None


def to_cel(value: Any) -> Any:
    if isinstance(value, celtypes.TimestampType):
        return value
    return json_to_cel(value)


def from_cel(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value


def _short(exc: object) -> str:
    text = str(exc.args[0]) if isinstance(exc, Exception) and exc.args else str(exc)
    return text.split(" (in activation")[0][:300]
