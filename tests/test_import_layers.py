"""The import structure of gateway/: no cycle between packages, no cycle between modules, and
each package importing only from the layers below it (docs/architecture.md, "Packages and
layers").

The graph is read from the source with `ast`: every `import` / `from ... import` of a gateway
module, at module level and inside functions (a function-level import is still a dependency, only
a later one), relative imports resolved. Imports under `if TYPE_CHECKING:` count for the package
and layer checks (naming a type of a higher layer is depending on it) but not for the module
cycle check (they never run: they are how two modules of one package name each other's types
without an import cycle). An import of a package's name (`from ..config import load_snapshot`)
is an edge to the package's `__init__`; importing a submodule is an edge to that submodule only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"

# Bottom to top. A unit is a package under gateway/ or a top-level module; it may import itself
# and the units of the layers below, never a unit of its own layer or of a layer above.
LAYERS: list[tuple[str, ...]] = [
    ("compiled",),  # which request-path modules run compiled (gateway/__init__.py asks it first)
    ("gateway", "core", "errors", "redact", "settings_fields", "worker_settings"),  # the ground floor: imports nothing of ours
    ("settings",),  # where the settings come from (pydantic-settings): flags, environment, a file
    ("policy",),  # CEL rules and their facts
    ("config",),  # the bundle -> a frozen Snapshot (compiles policy's rules)
    ("routing",),  # candidates and breakers over the snapshot
    ("providers",),  # wire types, translators, codec table, transport, adapters
    ("alerts", "ops"),  # alert delivery to webhooks; provider tests, model discovery, health
    ("billing",),  # prices, limits, the limiter
    ("usage",),  # the ledger: spool, owner, DuckDB store
    ("tasks",),  # the task engine: durable task store, polling, refunds (every task family)
    ("midjourney",),  # Midjourney's task store and action prices (its front door: server/midjourney/)
    ("console",),  # the web console's pages and sessions (server/routes.py routes /console/ to it)
    ("server",),  # the RSGI app: routes, the envelope, the attempt engine, Midjourney's front door
    ("h1server",),  # the HTTP server the workers run the app on (its supervisor: stdlib only)
    ("commands", "serve", "diff", "native_build"),  # `tollgate check/explain/...`; `tollgate serve` (process start-up); `tollgate diff`; building the compiled request path
    ("cli",),
    ("__main__",),
]

# Inside providers/, bottom to top (same rule).
PROVIDER_LAYERS: list[tuple[str, ...]] = [
    ("wire",),  # msgspec types per API family
    ("translate", "transport", "auth"),  # pairwise codecs; upstream HTTP clients; cloud credentials (SigV4, OAuth)
    ("codecs", "adapters", "keyring"),  # the codec table; one adapter per provider kind; key rotation
]

# Module cycles known and scheduled for removal: (a, b) pairs, each written once.
KNOWN_MODULE_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(GATEWAY.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under `node`; those under `if TYPE_CHECKING:` only with `type_checking`."""
    for child in ast.iter_child_nodes(node):
        if not type_checking and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(other, type_checking)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _imports(child, type_checking)


def imports_of(name: str, path: Path, modules: dict[str, Path], type_checking: bool) -> set[str]:
    """The gateway modules `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path)), type_checking):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "gateway")
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "gateway":
            continue
        submodules = [f"{target}.{alias.name}" for alias in node.names]
        found.update(s for s in submodules if s in modules)
        if not all(s in modules for s in submodules):
            found.add(target)
    unknown = {m for m in found if m not in modules}
    assert not unknown, f"{name} imports modules that do not exist: {sorted(unknown)}"
    return found - {name}


def graph(type_checking: bool = True) -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules, type_checking) for name, path in modules.items()}


def unit(module: str, depth: int = 1) -> str:
    """The package (or top-level module) a module belongs to, `depth` levels under gateway."""
    parts = module.split(".")
    if len(parts) <= depth:
        return parts[-1]
    return parts[depth]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def collapse(edges: dict[str, set[str]], key: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        if a not in key:
            continue
        out.setdefault(key[a], set()).update(key[b] for b in targets if b in key and key[b] != key[a])
    return out


def layer_violations(edges: dict[str, set[str]], key: dict[str, str], layers: list[tuple[str, ...]]) -> list[str]:
    level = {u: i for i, layer in enumerate(layers) for u in layer}
    bad = []
    for a, targets in sorted(edges.items()):
        if a not in key:
            continue
        for b in sorted(targets):
            if b not in key or key[a] == key[b]:
                continue
            if level[key[b]] >= level[key[a]]:
                bad.append(f"{a} ({key[a]}) imports {b} ({key[b]})")
    return bad


def test_the_graph_sees_every_kind_of_import() -> None:
    edges = graph()
    assert "gateway.config.types" in edges["gateway.billing.plan"]  # from ..config.types import
    assert "gateway.providers.transport.h1client" in edges["gateway.providers.transport.clients"]  # in a function
    assert "gateway.serve.command" in edges["gateway.cli"]  # in a function
    assert "gateway.commands" in edges["gateway.cli"]  # from . import <module>
    assert "gateway.config" in edges["gateway.usage.ingester"]  # from ..config import <name>: the package
    assert "gateway.config.snapshot" in edges["gateway.providers.translate.codec"]  # under TYPE_CHECKING
    assert "gateway.config.snapshot" not in graph(type_checking=False)["gateway.providers.translate.codec"]


def test_every_unit_has_a_layer() -> None:
    edges = graph()
    known = {u for layer in LAYERS for u in layer}
    assert {unit(m) for m in edges} <= known
    inside = {unit(m, 2) for m in edges if m.startswith("gateway.providers.")}
    assert inside == {u for layer in PROVIDER_LAYERS for u in layer}


def test_no_cycle_between_packages() -> None:
    edges = graph()
    assert cycles(collapse(edges, {m: unit(m) for m in edges})) == []


def test_no_cycle_between_modules() -> None:
    found = [c for c in cycles(graph(type_checking=False)) if not (len(c) == 2 and frozenset(c) in KNOWN_MODULE_CYCLES)]
    assert found == []


def test_each_package_imports_only_lower_layers() -> None:
    edges = graph()
    assert layer_violations(edges, {m: unit(m) for m in edges}, LAYERS) == []


def test_inside_providers_each_folder_imports_only_lower_ones() -> None:
    edges = graph()
    key = {m: unit(m, 2) for m in edges if m.startswith("gateway.providers.")}
    assert layer_violations(edges, key, PROVIDER_LAYERS) == []
