"""The compiled rule set: ordered CEL rules and the decision they produce for one request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ..core.body_override import BodyPatch
from .cel import CelEvalError, CompiledExpr, Lookup
from .memo_key import hashable


class RuleFailed(Exception):
    """A rule errored at run time: the request is refused (fail closed)."""

    def __init__(self, rule_id: str, message: str) -> None:
        self.rule_id, self.message = rule_id, message
        super().__init__(f"rule {rule_id!r} failed: {message}")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    expr: CompiledExpr
    deny: str | None = None
    route: str | None = None
    set_model: str | None = None
    set_headers: tuple[tuple[str, str], ...] = ()
    add_tags: tuple[str, ...] = ()
    set_body: BodyPatch | None = None  # accumulates, like set_headers

    @property
    def decisive(self) -> bool:
        return self.deny is not None or self.route is not None or self.set_model is not None


@dataclass(frozen=True, slots=True)
class Decision:
    matched: tuple[str, ...] = ()
    deny: str | None = None
    deny_rule: str | None = None
    route: str | None = None
    set_model: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    body: tuple[BodyPatch, ...] = ()  # set_body of every matching rule, in order


NO_DECISION = Decision()


_MISS = object()
_COMPOUND_FIELDS = frozenset({"metadata", "headers", "tags"})


def _picker(indexes: tuple[int, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    if len(indexes) >= 2:
        return itemgetter(*indexes)  # type: ignore[return-value]
    if len(indexes) == 1:
        i = indexes[0]
        return lambda values: (values[i],)
    return lambda values: ()


@dataclass
class RuleSet:
    """Rules in order. Every value any rule references is read once per request; each rule's
    result is memoized on its own referenced values, so a warm evaluation is a dict lookup per
    rule and cel-python only runs for combinations not seen before (or for impure rules)."""

    rules: tuple[CompiledRule, ...]
    refs: tuple[tuple[str, str | None], ...] = ()
    pickers: tuple[Callable[[list[Any]], tuple[Any, ...]], ...] = ()
    compound: frozenset[int] = frozenset()
    pure: bool = True
    reads_usage: bool = False  # a rule reads `usage` (the limiter's counters: a store call)
    _decisions: dict[tuple[Any, ...], Decision] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, rules: tuple[CompiledRule, ...]) -> RuleSet:
        refs = sorted({r for rule in rules for r in rule.expr.refs}, key=lambda r: (r[0], r[1] or ""))
        index = {ref: i for i, ref in enumerate(refs)}
        pickers = tuple(_picker(tuple(index[r] for r in rule.expr.refs)) for rule in rules)
        compound = frozenset(
            i for i, (_, name) in enumerate(refs) if name is None or name in _COMPOUND_FIELDS
        )
        pure = all(rule.expr.pure for rule in rules)
        return cls(rules=rules, refs=tuple(refs), pickers=pickers, compound=compound, pure=pure,
                   reads_usage=any(root == "usage" for root, _ in refs))

    def evaluate(self, lookup: Lookup) -> Decision:
        if not self.rules:
            return NO_DECISION
        raw = [lookup(root, name) for root, name in self.refs]
        keys = raw
        if self.compound:  # lists and maps are frozen into tuples to key the memos
            keys = raw.copy()
            for i in self.compound:
                keys[i] = hashable(raw[i])
        if not self.pure:
            return self._decide(raw, keys)
        # With only pure rules the whole decision is a function of the values read: traffic
        # repeating a combination costs one lookup; a new one falls back to per-rule memos.
        whole = tuple(keys)
        decision = self._decisions.get(whole)
        if decision is None:
            decision = self._decide(raw, keys)
            if len(self._decisions) >= 16384:
                self._decisions.clear()
            self._decisions[whole] = decision
        return decision

    def _decide(self, raw: list[Any], keys: list[Any]) -> Decision:
        matched: list[str] = []
        headers: dict[str, str] = {}
        tags: list[str] = []
        body: list[BodyPatch] = []
        for rule, pick in zip(self.rules, self.pickers, strict=True):
            hit = rule.expr.memo.get(pick(keys), _MISS) if rule.expr.pure else _MISS
            if hit is _MISS:
                hit = self._run(rule, pick, raw, keys)
            if hit is False:
                continue
            matched.append(rule.id)
            headers.update(rule.set_headers)
            tags.extend(t for t in rule.add_tags if t not in tags)
            if rule.set_body is not None:
                body.append(rule.set_body)
            if rule.decisive:
                return Decision(
                    matched=tuple(matched),
                    deny=rule.deny,
                    deny_rule=rule.id if rule.deny is not None else None,
                    route=rule.route,
                    set_model=rule.set_model,
                    headers=tuple(headers.items()),
                    tags=tuple(tags),
                    body=tuple(body),
                )
        return Decision(matched=tuple(matched), headers=tuple(headers.items()), tags=tuple(tags),
                        body=tuple(body))

    @staticmethod
    def _run(rule: CompiledRule, pick: Callable[[list[Any]], tuple[Any, ...]], raw: list[Any],
             keys: list[Any]) -> bool:
        try:
            hit = rule.expr.run(pick(raw))
        except CelEvalError as exc:
            raise RuleFailed(rule.id, str(exc)) from None
        if not isinstance(hit, bool):
            raise RuleFailed(rule.id, f"`when` gave {type(hit).__name__}, not a bool")
        if rule.expr.pure:
            rule.expr.remember(pick(keys), hit)
        return hit
