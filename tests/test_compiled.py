"""The compiled request path (gateway/compiled.py): what the suite runs is the compiled build,
an edited source never runs next to stale compiled modules, and mypy guards the compiled modules
against narrowings mypyc would check at run time."""

from __future__ import annotations

import importlib.machinery
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import gateway.server.relay
from gateway import compiled

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
PROBE = (
    "import gateway, gateway.compiled as c, gateway.server.relay as r, gateway.billing.store as s; "
    "print(c.status(), r.__file__, s.__file__)"
)


def _probe(package_parent: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-P", "-c", PROBE], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}, check=True)
    return done.stdout.split()


def test_the_suite_runs_the_compiled_request_path() -> None:
    """`make test` builds it first (make native); a plain pytest after an edit says to rebuild."""
    assert compiled.status() == "on", (
        f"the compiled request path is {compiled.status()}: run `make native` (gateway/compiled.py)")
    assert gateway.server.relay.__file__.endswith(SUFFIX)


def test_every_compiled_module_is_checked_for_unreachable_code() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    checked = [o for o in config["tool"]["mypy"]["overrides"] if o.get("warn_unreachable")]
    assert len(checked) == 1 and sorted(checked[0]["module"]) == sorted(compiled.MODULES)


def test_every_compiled_module_exists() -> None:
    for module in compiled.MODULES:
        assert compiled.source_of(module).is_file(), module


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if compiled.status() != "on":
        pytest.skip("the request path is not compiled here")
    parent = tmp_path_factory.mktemp("copy")
    shutil.copytree(ROOT / "gateway", parent / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    return parent


def test_a_copy_as_built_runs_compiled(package_copy: Path) -> None:
    status, relay, store = _probe(package_copy)
    assert status == "on" and relay.endswith(SUFFIX) and store.endswith(SUFFIX)


def test_an_edited_source_makes_every_compiled_module_run_as_python(package_copy: Path) -> None:
    edited = package_copy / "gateway" / "billing" / "store.py"
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    status, relay, store = _probe(package_copy)
    assert status == "stale"
    # not only the edited module: calls between compiled modules are bound at build time
    assert relay.endswith("relay.py") and store.endswith("store.py")


def test_no_error_class_is_defined_in_a_compiled_module() -> None:
    """mypyc ignores a compiled class's class-level overrides (`status = 408`): errors.py holds them."""
    import importlib
    import inspect

    from gateway.errors import GatewayError

    for module in compiled.MODULES:
        found = importlib.import_module(module)
        defined = [name for name, cls in inspect.getmembers(found, inspect.isclass)
                   if cls.__module__ == module and issubclass(cls, GatewayError)]
        assert defined == [], f"{module} defines {defined}: move them to gateway/errors.py"


def test_no_compiled_module_awaits_in_a_finally_block() -> None:
    """mypyc (2.4): an exception that went through a `finally` holding an `await` comes back to
    life at a later `finally` holding an `await`, escaping the handler that caught it (a
    reproduction is in docs/architecture.md). The compiled modules end things explicitly."""
    import ast

    found = []
    for module in compiled.MODULES:
        tree = ast.parse(compiled.source_of(module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                found += [f"{module}:{sub.lineno}" for stmt in node.finalbody for sub in ast.walk(stmt)
                          if isinstance(sub, ast.Await)]
    assert found == []


# Made for every request: a dataclass's generated __init__ is Python even in a compiled class
# (it is written by the dataclass decorator at import), so these define their own.
PER_REQUEST = [
    "gateway.server.envelope:Call", "gateway.server.exchange:Exchange", "gateway.server.admission:Prepared",
    "gateway.billing.store:Ask", "gateway.billing.store:Grant", "gateway.billing.store:Settle",
    "gateway.billing.limiter:Ticket", "gateway.billing.limits:Admission",
    "gateway.policy.context:RequestView", "gateway.policy.context:KeyView", "gateway.policy.context:UsageView",
    "gateway.providers.adapters.base:UpstreamCall", "gateway.providers.translate.codec:Outgoing",
]


@pytest.mark.parametrize("target", PER_REQUEST)
def test_a_per_request_dataclass_is_built_by_compiled_code(target: str) -> None:
    import importlib
    import types

    module, name = target.split(":")
    assert module in compiled.MODULES
    cls = getattr(importlib.import_module(module), name)
    assert not isinstance(cls.__init__, types.FunctionType), f"{target}: its __init__ runs as Python"


def test_an_explicit_dataclass_init_takes_every_field_in_order() -> None:
    """So that positional calls, keywords and `dataclasses.replace` behave as the generated one."""
    import ast

    mismatched = []
    for module in compiled.MODULES:
        for node in ast.parse(compiled.source_of(module).read_text()).body:
            if not (isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list)):
                continue
            init = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
            if init is None:
                continue
            fields = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
            params = [a.arg for a in init.args.args[1:]]
            if params != fields:
                mismatched.append(f"{module}.{node.name}: {params} != {fields}")
    assert mismatched == []


def test_no_msgspec_struct_is_defined_in_a_compiled_module() -> None:
    """mypyc rewrites a compiled module's annotations, which is what msgspec reads: the Structs
    live in `*_types.py` modules next to the code that decodes them (docs/architecture.md)."""
    import importlib
    import inspect

    import msgspec

    for module in compiled.MODULES:
        found = importlib.import_module(module)
        defined = [name for name, cls in inspect.getmembers(found, inspect.isclass)
                   if cls.__module__ == module and issubclass(cls, msgspec.Struct)]
        assert defined == [], f"{module} defines {defined}: move them to a *_types.py module"
