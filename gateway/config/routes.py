"""Compile a bundle's route table: a direct route for every model a provider lists, an alias
route for every `[model.NAME]`, each alias with its flattened fallback chain.

Checks the aliases' cross-references: their target providers and models, fallbacks that name no
route, fallback cycles, and aliases that would hide a provider's model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..policy.cel import AFFINITY_VARIABLES, CelCompileError, CompiledExpr, compile_expr
from .load import Located, ReportError
from .snapshot import ProviderRuntime, Route, RouteTarget
from .types import Alias


def compile_routes(
    aliases: Sequence[Located[Alias]], providers: Mapping[str, ProviderRuntime], error: ReportError
) -> dict[str, Route]:
    """Every routable name (a provider's model or an alias) -> its `Route`; problems go to `error`."""
    return RouteCompiler(aliases, providers, error).compile()


class RouteCompiler:
    def __init__(
        self,
        aliases: Sequence[Located[Alias]],
        providers: Mapping[str, ProviderRuntime],
        error: ReportError,
    ) -> None:
        self.aliases, self.providers, self.error = aliases, providers, error
        self.routes: dict[str, Route] = {}

    def compile(self) -> dict[str, Route]:
        direct: dict[str, list[RouteTarget]] = {}
        for p in self.providers.values():
            for model in sorted(p.models):
                target = RouteTarget(p.id, p.model_map.get(model, model), p.weight, p.priority)
                direct.setdefault(model, []).append(target)
        for name, targets in direct.items():
            self.routes[name] = Route(name, _tiers(targets), "weighted", (), is_alias=False)
        aliases = {a.name: a for a in self.aliases}
        for located in self.aliases:
            self.check_shadowing(located, direct)
            targets = self.alias_targets(located)
            self.routes[located.name] = Route(
                located.name, _tiers(targets), located.item.strategy, (), is_alias=True
            )
        for located in self.aliases:
            for i, fallback in enumerate(located.item.fallbacks):
                if fallback not in self.routes:
                    self.error(located.loc, f'unknown model or alias "{fallback}"', "fallbacks", i)
        self.check_cycles(aliases)
        for name, located in aliases.items():
            chain = tuple(_flatten(name, aliases))
            route = self.routes[name]
            self.routes[name] = Route(name, route.tiers, route.strategy, chain, is_alias=True,
                                      reasoning=located.item.reasoning, affinity=self.affinity(located))
        return self.routes

    def affinity(self, located: Located[Alias]) -> CompiledExpr | None:
        """The alias's `affinity` CEL, compiled once here (routing/affinity.py evaluates it)."""
        source = located.item.affinity
        if source is None:
            return None
        try:
            return compile_expr(source, AFFINITY_VARIABLES)
        except CelCompileError as exc:
            self.error(located.loc, f"affinity: CEL {exc}", "affinity")
            return None

    def check_shadowing(self, located: Located[Alias], direct: Mapping[str, list[RouteTarget]]) -> None:
        """An alias named like a model a provider lists would silently replace that direct
        route. It may, only when it targets that very model on that provider (it then refines
        the route: weights, priorities, fallbacks); any other provider listing the name is an
        error, as its model would become unreachable."""
        name = located.name
        owners = dict.fromkeys(t.provider for t in direct.get(name, ()))  # in bundle order
        targeted = {t.provider for t in located.item.targets if t.model == name}
        for provider in owners:
            if provider not in targeted:
                self.error(
                    located.loc,
                    f'alias "{name}" has the same name as a model of provider "{provider}"; rename the '
                    f'alias or remove the model from the provider (or target it: {{ provider = '
                    f'"{provider}", model = "{name}" }})',
                )

    def alias_targets(self, located: Located[Alias]) -> list[RouteTarget]:
        targets = []
        for i, t in enumerate(located.item.targets):
            provider = self.providers.get(t.provider)
            if provider is None:
                self.error(located.loc, f'unknown provider "{t.provider}"', "targets", i, "provider")
                continue
            if provider.models and t.model not in provider.models:
                served = ", ".join(sorted(provider.models))
                self.error(
                    located.loc,
                    f'provider "{t.provider}" does not serve model "{t.model}" (it serves: {served})',
                    "targets",
                    i,
                    "model",
                )
                continue
            upstream = provider.model_map.get(t.model, t.model)
            priority = provider.priority if t.priority is None else t.priority
            targets.append(RouteTarget(provider.id, upstream, t.weight, priority))
        return targets

    def check_cycles(self, aliases: Mapping[str, Located[Alias]]) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            located = aliases[name]
            for i, nxt in enumerate(located.item.fallbacks):
                if nxt not in aliases:
                    continue
                if state.get(nxt) == 1:
                    cycle = " -> ".join([*path[path.index(nxt) :], nxt])
                    self.error(located.loc, f"alias fallback cycle: {cycle}", "fallbacks", i)
                elif nxt not in state:
                    visit(nxt, [*path, nxt])
            state[name] = 2

        for name in aliases:
            if name not in state:
                visit(name, [name])


def _tiers(targets: list[RouteTarget]) -> tuple[tuple[RouteTarget, ...], ...]:
    by_priority: dict[int, list[RouteTarget]] = {}
    for t in targets:
        by_priority.setdefault(t.priority, []).append(t)
    return tuple(tuple(by_priority[p]) for p in sorted(by_priority))


def _flatten(name: str, aliases: Mapping[str, Located[Alias]]) -> list[str]:
    order: list[str] = []
    stack = list(reversed(aliases[name].item.fallbacks))
    while stack:
        nxt = stack.pop()
        if nxt == name or nxt in order:
            continue
        order.append(nxt)
        if nxt in aliases:
            stack.extend(reversed(aliases[nxt].item.fallbacks))
    return order
