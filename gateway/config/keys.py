"""Compile a bundle's groups, client keys and admin keys into their runtime form.

Checks each key's hash (well-formed, used once across keys and admin keys), group and IP
allow-list.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC

from .load import Loc, Located, RawBundle, ReportError
from .snapshot import ALLOW_ALL, AdminRuntime, GroupRuntime, KeyRuntime, ModelMatcher, Prepaid
from .types import Group, Key

_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


class KeyCompiler:
    """`compile_groups` first, then `compile_keys`: a key refers to its group."""

    def __init__(self, raw: RawBundle, error: ReportError) -> None:
        self.raw, self.error = raw, error
        self.groups: dict[str, GroupRuntime] = {}
        self.matchers: dict[tuple[str, ...], ModelMatcher] = {}
        self._raw_groups: dict[str, Group] | None = None

    def compile_groups(self) -> dict[str, GroupRuntime]:
        for located in self.raw.groups:
            g = located.item
            self.groups[located.name] = GroupRuntime(
                id=located.name,
                price_multiplier=g.price_multiplier,
                models=self.matcher(g.models),
                limits=g.limits,
                model_limits=dict(g.model_limits),
                budget=g.budget,
            )
        return self.groups

    def compile_keys(
        self,
    ) -> tuple[dict[bytes, KeyRuntime], dict[str, KeyRuntime], dict[bytes, AdminRuntime]]:
        owners: dict[bytes, str] = {}
        by_hash: dict[bytes, KeyRuntime] = {}
        by_id: dict[str, KeyRuntime] = {}
        for located in self.raw.keys:
            digest = self.parse_hash(located.item.hash, located.loc, owners, f'key "{located.name}"')
            runtime = self.compile_key(located)
            if digest is not None:
                by_hash[digest] = runtime
                by_id[runtime.id] = runtime
        admins: dict[bytes, AdminRuntime] = {}
        for adm in self.raw.admin_keys:
            digest = self.parse_hash(adm.item.hash, adm.loc, owners, f'admin_key "{adm.name}"')
            if digest is not None:
                admins[digest] = AdminRuntime(adm.item.id)
        return by_hash, by_id, admins

    def parse_hash(self, text: str, loc: Loc, owners: dict[bytes, str], owner: str) -> bytes | None:
        match = _HASH.match(text)
        if not match:
            self.error(loc, 'hash must be "sha256:" and 64 lowercase hex digits', "hash")
            return None
        digest = bytes.fromhex(match.group(1))
        if digest in owners:
            self.error(loc, f"hash is already used by {owners[digest]}", "hash")
            return None
        owners[digest] = owner
        return digest

    def compile_key(self, located: Located[Key]) -> KeyRuntime:
        k, loc = located.item, located.loc
        group = None
        if k.group is not None:
            group = self.groups.get(k.group)
            if group is None:
                self.error(loc, f'unknown group "{k.group}"', "group")
        networks = []
        for i, cidr in enumerate(k.ip_allow):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                self.error(loc, f'"{cidr}" is not an IP address or CIDR range', "ip_allow", i)
        expires = k.expires
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return KeyRuntime(
            id=k.id,
            group=group,
            models=self.matcher(k.models),
            expires=expires,
            networks=tuple(networks),
            tags=tuple(k.tags),
            budget=k.budget,
            limits=k.limits,
            model_limits=dict(k.model_limits),
            price_multiplier=k.price_multiplier,
            disabled=k.disabled,
            prepaid=self.prepaid(located),
        )

    def prepaid(self, located: Located[Key]) -> Prepaid | None:
        """The key's prepaid terms; credit fields on a postpaid key are a mistake, not a no-op."""
        k = located.item
        terms = prepaid_terms(k, self.raw_group(k.group))
        if terms is None:
            for name in ("credit_limit", "low_balance_usd"):
                if getattr(k, name) is not None:
                    self.error(located.loc, f'{name} applies to prepaid keys only: set billing = "prepaid" '
                               "on the key or its group", name)
        return terms

    def raw_group(self, name: str | None) -> Group | None:
        if name is None:
            return None
        if self._raw_groups is None:
            self._raw_groups = {g.name: g.item for g in self.raw.groups}
        return self._raw_groups.get(name)

    def matcher(self, patterns: list[str]) -> ModelMatcher:
        if not patterns:
            return ALLOW_ALL
        key = tuple(patterns)
        # Thousands of keys share a handful of allow-lists: compile each distinct one once.
        found = self.matchers.get(key)
        if found is None:
            found = self.matchers[key] = ModelMatcher(key)
        return found


def prepaid_terms(key: Key, group: Group | None) -> Prepaid | None:
    """A key's own billing fields win over its group's; postpaid (None) unless one says prepaid."""
    billing = key.billing or (group.billing if group is not None else "postpaid")
    if billing != "prepaid":
        return None
    limit = key.credit_limit if key.credit_limit is not None else group.credit_limit if group else 0.0
    low = key.low_balance_usd if key.low_balance_usd is not None else group.low_balance_usd if group else None
    return Prepaid(limit, low)
