"""A provider's models as the bundle lists them against what its upstream offers: listed but
not offered, offered but not listed, listed without a price; and a TOML snippet to paste."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..config.snapshot import ProviderRuntime, Snapshot


@dataclass(slots=True)
class Drift:
    provider: str
    offered: list[str]
    not_offered: list[str]  # listed in the bundle, not offered upstream
    not_listed: list[str]  # offered upstream, not in the bundle
    unpriced: list[str]  # listed and offered, no price found
    new_unpriced: list[str] = field(default_factory=list)  # not listed, no price: for the snippet

    @property
    def drifted(self) -> bool:
        return bool(self.not_offered or self.not_listed or self.unpriced)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "drifted": self.drifted}


def listed_models(provider: ProviderRuntime) -> list[str]:
    """The bundle's models for this provider, by the names sent upstream (model_map)."""
    return sorted({provider.model_map.get(m, m) for m in provider.models})


def drift(snap: Snapshot, provider: ProviderRuntime, offered: list[str], ignore: Sequence[str] = ()) -> Drift:
    shown = [m for m in offered if not any(fnmatch.fnmatchcase(m, g) for g in ignore)]
    listed = listed_models(provider)
    offered_set = set(offered)
    not_listed = [m for m in shown if m not in set(listed)]
    return Drift(
        provider=provider.id,
        offered=shown,
        not_offered=[m for m in listed if m not in offered_set],
        not_listed=not_listed,
        unpriced=[m for m in listed if m in offered_set and snap.price_for(provider.id, m) is None],
        new_unpriced=[m for m in not_listed if snap.price_for(provider.id, m) is None],
    )


def snippet(d: Drift, listed: list[str]) -> str:
    """TOML to paste: the provider's models as offered, and a price table for each model kept or
    added that has none (rates to fill in: 0.0 would make it free)."""
    keep = sorted((set(listed) - set(d.not_offered)) | set(d.not_listed))
    lines = [f'# provider "{d.provider}": models offered upstream (replace its `models`)',
             f"models = [{', '.join(json.dumps(m) for m in keep)}]"]
    for model in sorted(set(d.unpriced) | set(d.new_unpriced)):
        lines += ["", f"[price.{json.dumps(model)}]  # USD per million tokens: fill in the real rates",
                  "input = 0.0", "output = 0.0"]
    return "\n".join(lines) + "\n"
