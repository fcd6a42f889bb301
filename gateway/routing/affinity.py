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

import functools
import hashlib
import math
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
    return _digest(str(value))


@functools.lru_cache(maxsize=8192)  # values repeat (that is the point of affinity)
def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


_MASK = 2**64 - 1


@functools.lru_cache(maxsize=4096)
def _item_hash(item: str) -> int:
    """A stable 64-bit hash of a target or key (the same in every worker, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "big")


def _unit(key: int, item: int) -> float:
    """A uniform number in (0, 1) for the pair: splitmix64 of their xor (no hashing per request)."""
    z = ((key ^ item) + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) + 0.5) / _SPAN


@functools.lru_cache(maxsize=16384)  # per (tier, value): a warm request is one lookup
def pinned_order(tier: tuple[RouteTarget, ...], key: str) -> list[RouteTarget]:
    """A tier's targets for one affinity key, best first (weight-0 targets left out)."""
    k = int(key, 16)
    pool = [t for t in tier if t.weight > 0]
    if len(pool) < 2:
        return pool
    return sorted(pool, key=lambda t: -t.weight / math.log(_unit(k, _item_hash(f"{t.provider}\0{t.model}"))))


@functools.lru_cache(maxsize=16384)
def pinned_keys(keys: tuple[str, ...], key: str) -> list[int]:
    """Indexes of a provider's API keys for one affinity key, best first."""
    k = int(key, 16)
    hashes = _key_hashes(keys)
    return sorted(range(len(keys)), key=lambda i: _unit(k, hashes[i]), reverse=True)


@functools.lru_cache(maxsize=256)
def _key_hashes(keys: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(_item_hash(hashlib.sha256(k.encode()).hexdigest()) for k in keys)  # never a key itself
