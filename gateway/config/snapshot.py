"""The compiled, immutable runtime form of a bundle. The request path reads only this."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from ..core.body_override import BodyPatch
from ..core.presets import Preset
from ..policy.cel import CompiledExpr
from ..policy.rules import RuleSet
from ..redact import NOTHING, Redactor
from .alerts import AlertRuntime
from .types import Budget, Limits, Price, Provider, Settings, Timeouts

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ModelMatcher:
    """A glob allow-list; verdicts are cached because clients ask for few distinct models."""

    __slots__ = ("_cache", "_regex", "patterns")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
        self._regex = re.compile(joined) if patterns else None
        self._cache: dict[str, bool] = {}

    def allows(self, model: str) -> bool:
        verdict = self._cache.get(model)
        if verdict is None:
            verdict = self._regex is None or self._regex.fullmatch(model) is not None
            if len(self._cache) < 1024:
                self._cache[model] = verdict
        return verdict


ALLOW_ALL = ModelMatcher(())


@dataclass(frozen=True, slots=True)
class ProviderRuntime:
    id: str
    kind: str
    base_url: str
    api_keys: tuple[str, ...]
    models: frozenset[str]
    priority: int
    weight: int
    timeouts: Timeouts
    headers: tuple[tuple[str, str], ...]
    model_map: dict[str, str]
    spec: Provider  # kind-specific fields (azure deployments, mock latency, ...)
    # kind-specific secrets, `${...}` resolved (AWS keys, a Google service account's JSON): config/cloud.py
    credentials: dict[str, str] = field(default_factory=dict)
    body: BodyPatch | None = None  # the provider's `body` table (core/body_override.py)
    preset: Preset | None = None  # an openai-compatible preset's quirks (core/presets.py)

    def __repr__(self) -> str:  # never print the credentials
        return f"ProviderRuntime(id={self.id!r}, kind={self.kind!r}, base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class RouteTarget:
    provider: str
    model: str  # the name sent upstream
    weight: int
    priority: int


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    tiers: tuple[tuple[RouteTarget, ...], ...]  # lowest priority first
    strategy: str
    fallbacks: tuple[str, ...]  # other routes, in order, cycles removed
    is_alias: bool
    reasoning: str | None = None  # the alias's default reasoning effort (translate/reasoning.py)
    affinity: CompiledExpr | None = None  # the alias's affinity expression (routing/affinity.py)


@dataclass(frozen=True, slots=True)
class GroupRuntime:
    id: str
    price_multiplier: float
    models: ModelMatcher
    limits: Limits
    model_limits: dict[str, Limits]
    budget: Budget | None


@dataclass(frozen=True, slots=True)
class Prepaid:
    """A prepaid key's terms (docs/credits.md): requests spend its credit balance, which may
    go down to -credit_limit; below low_balance_usd it is reported as low."""

    credit_limit: float = 0.0
    low_balance_usd: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRuntime:
    id: str
    group: GroupRuntime | None
    models: ModelMatcher
    expires: datetime | None
    networks: tuple[Network, ...]
    tags: tuple[str, ...]
    budget: Budget | None
    limits: Limits
    model_limits: dict[str, Limits]
    price_multiplier: float
    disabled: bool
    prepaid: Prepaid | None = None  # None: postpaid (billed after use, as budgets allow)

    def allows_model(self, model: str) -> bool:
        if self.models.patterns:
            return self.models.allows(model)
        return self.group is None or self.group.models.allows(model)

    def allows_ip(self, ip: str) -> bool:
        if not self.networks:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class PriceRuntime:
    model: str
    rates: Price
    tiers: tuple[tuple[CompiledExpr, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class AdminRuntime:
    id: str


def _short_input_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 where it has one: for a key's few bytes it runs far less code per
    call than OpenSSL's (hashlib's), whose setup showed in the request's profile."""
    for name in ("_sha256", "_sha2"):  # Python 3.11; 3.12 and later
        try:
            return cast(Callable[[bytes], Any], importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


_sha256 = _short_input_sha256()


def hash_key(secret: str) -> bytes:
    digest: bytes = _sha256(secret.encode()).digest()
    return digest


@dataclass(frozen=True)
class Snapshot:
    revision: str
    loaded_at: datetime
    directory: str
    settings: Settings
    providers: dict[str, ProviderRuntime]
    routes: dict[str, Route]
    groups: dict[str, GroupRuntime]
    keys_by_hash: dict[bytes, KeyRuntime]
    keys_by_id: dict[str, KeyRuntime]
    admins_by_hash: dict[bytes, AdminRuntime]
    prices: dict[str, PriceRuntime]
    rules: RuleSet
    warnings: tuple[str, ...] = field(default=())
    redactor: Redactor = NOTHING  # every configured secret, masked in what leaves the gateway
    # Files outside the bundle it was compiled from (`${file:...}` secrets, the env file): a
    # change to one of them reloads the bundle too (config/reload.py).
    sources: tuple[str, ...] = ()
    alerts: tuple[AlertRuntime, ...] = ()  # `[[alert]]` entries (config/alerts.py)

    def key_for(self, secret: str) -> KeyRuntime | None:
        # Lookup by SHA-256 digest: timing depends on the digest, not on the secret's prefix.
        return self.keys_by_hash.get(hash_key(secret))

    def admin_for(self, secret: str) -> AdminRuntime | None:
        return self.admins_by_hash.get(hash_key(secret))

    def price_for(self, provider: str, model: str) -> PriceRuntime | None:
        return self.prices.get(f"{provider}/{model}") or self.prices.get(model)

    def models_for(self, key: KeyRuntime) -> list[str]:
        return sorted(name for name in self.routes if key.allows_model(name))
