"""The compiled request path: the modules every request runs through, compiled to C extension
modules by mypyc (the code is mypy --strict clean, so it compiles as written). Measured: a
request's CPU (whole process tree, c=16) went from ~191 to ~108 µs with the compiled constructors
and the rest of this list (benchmarks/README.md).

`python -m gateway.native_build` builds them next to their sources (`make run` and `make test` do it
when a source changed); a machine without a C compiler runs the same modules as Python. Built
modules are used only while every listed source is exactly what was compiled: an edited source
makes `guard()` (called when `gateway` is imported) load all of them as Python again, never a
stale mix (calls between compiled modules are bound at build time).
(docs/architecture.md, "The compiled request path")"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent  # the gateway package
GROUP = "gateway._native"  # the shared library: gateway/_native__mypyc.<abi>.so
MANIFEST = ROOT / "_native.json"

# The request path, minus modules that define msgspec Structs (mypyc turns their annotations into
# something msgspec cannot read) and those only reached at start-up or on errors.
MODULES = (
    "gateway.server.envelope", "gateway.server.relay", "gateway.server.admission",
    "gateway.server.attempts", "gateway.server.exchange", "gateway.server.deliver",
    "gateway.server.intake", "gateway.server.auth", "gateway.server.http",
    "gateway.server.disconnect", "gateway.server.account_events",
    "gateway.billing.store", "gateway.billing.limiter", "gateway.billing.plan",
    "gateway.billing.answers", "gateway.billing.pricing", "gateway.billing.limits",
    "gateway.policy.rules", "gateway.policy.context", "gateway.policy.memo_key",
    "gateway.providers.adapters.base", "gateway.providers.adapters.openai",
    "gateway.providers.transport.h1client", "gateway.providers.transport.h1connection",
    "gateway.providers.codecs", "gateway.providers.keyring",
    "gateway.routing.select", "gateway.routing.breaker",
    "gateway.usage.spool", "gateway.usage.ledger",
    "gateway.core.sweep", "gateway.redact", "gateway.ops.health",
    "gateway.config.snapshot", "gateway.providers.translate.codec",
    "gateway.providers.wire.head", "gateway.providers.wire.openai_usage",
    "gateway.providers.translate.openai_openai",
    "gateway.h1server.conn", "gateway.h1server.proto", "gateway.h1server.head", "gateway.h1server.scope",
)


def source_of(module: str, package: Path = ROOT) -> Path:
    """The `.py` file of a `gateway.*` module in `package` (this package, or a copy of it)."""
    return package.joinpath(*module.split(".")[1:]).with_suffix(".py")


def digest(package: Path = ROOT) -> str:
    """What the built modules were compiled from: every listed source of `package`, in order."""
    h = hashlib.sha256()
    for module in MODULES:
        h.update(module.encode() + b"\0" + source_of(module, package).read_bytes() + b"\0")
    return h.hexdigest()


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def built_files() -> list[Path]:
    """The extension modules a build leaves in the package (the shims and the shared library)."""
    suffix = extension_suffix()
    shared = ROOT / f"{GROUP.rsplit('.', 1)[1]}__mypyc{suffix}"
    return [shared, *(source_of(m).with_suffix(suffix) for m in MODULES)]


def status() -> str:
    """`on`, `stale` (a source changed since the build: running as Python), or `off` (not built)."""
    return _STATUS


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their `.py` files even where a built module sits next to them."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(name, source_of(name))


def guard() -> str:
    """Use the built modules only when they match the sources; returns the `status()`."""
    global _STATUS
    if not built_files()[0].exists():
        _STATUS = "off"
        return _STATUS
    try:
        built = json.loads(MANIFEST.read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        built = None
    if built == digest():
        _STATUS = "on"
    else:
        _STATUS = "stale"
        if not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
            sys.meta_path.insert(0, _SourcesFirst())
    return _STATUS


_STATUS = "off"
