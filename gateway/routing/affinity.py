"""Affinity routing: an alias's `affinity` CEL expression (compiled at load, config/routes.py)
gives a value per request, e.g. `request.metadata.user`; requests with the same value go to the
same target and the same API key, so the upstream's prompt cache hits.

Weighted rendezvous hashing: each target scores `-weight / ln(u)`, u uniform in (0, 1) from a
hash of (value, provider, model), and the targets are tried best score first. A target whose
breaker is open is skipped by the attempt engine, so its values move to their next-best target
(only those: the others stay where they are) and come back when it recovers. The same over a
provider's keys (providers/keyring.py). Only a hash of the value is kept (`affinity_key`, in the
usage row): values are often user ids, which the ledger does not need in clear.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TypeVar

from ..config.snapshot import RouteTarget
from ..policy.cel import CelEvalError, CompiledExpr, Lookup

T = TypeVar("T")
_SPAN = float(2**64)


def affinity_key(expr: CompiledExpr, lookup: Lookup) -> str | None:
    """The hashed affinity value of one request; None (route as usual) when the expression
    gives null or an empty string, or fails (a missing metadata field): affinity is a cache
    optimisation, never a reason to refuse a request."""
    try:
        value = expr.evaluate(lookup)
    except CelEvalError:
        return None
    if value is None or value == "":
        return None
    return hashlib.sha256(str(value).encode()).hexdigest()[:16]


def _unit(key: str, item: str) -> float:
    digest = hashlib.blake2b(f"{key}\0{item}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SPAN  # in (0, 1), never 0 or 1


def pinned_order(tier: Sequence[RouteTarget], key: str) -> list[RouteTarget]:
    """A tier's targets for one affinity key, best first (weight-0 targets left out)."""
    pool = [t for t in tier if t.weight > 0]
    return sorted(pool, key=lambda t: -t.weight / math.log(_unit(key, f"{t.provider}\0{t.model}")))


def pinned_keys(keys: Sequence[str], key: str) -> list[int]:
    """Indexes of a provider's API keys for one affinity key, best first."""
    return sorted(range(len(keys)), key=lambda i: _unit(key, hashlib.sha256(keys[i].encode()).hexdigest()),
                  reverse=True)
