"""The diff report: sections of changes, the replay figures, and the one-line summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

# Section order is the order of the output.
# One change of each section, in the summary line.
NOUNS = {"providers": "provider", "models": "model/alias", "routes": "route", "prices": "price",
         "settings": "setting", "keys": "key", "access": "access", "limits": "limit/budget",
         "groups": "group", "rules": "rule"}
SECTIONS: dict[str, str] = {
    "providers": "Providers",
    "models": "Models and aliases",
    "routes": "Routes",
    "prices": "Prices",
    "settings": "Settings",
    "keys": "Keys",
    "access": "Access per key",
    "limits": "Limits and budgets",
    "groups": "Groups",
    "rules": "Rules",
}


@dataclass(frozen=True)
class Change:
    """One semantic change: `subject` (a model, key, rule...) was `kind` (added, removed,
    changed, ...); `details` are human lines, `data` the same facts for JSON."""

    section: str
    subject: str
    kind: str
    details: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Money:
    old: Decimal = Decimal(0)
    new: Decimal = Decimal(0)
    requests: int = 0

    @property
    def delta(self) -> Decimal:
        return self.new - self.old

    def percent(self) -> Decimal | None:
        if self.old == 0:
            return None
        return (self.delta * 100 / self.old).quantize(Decimal("0.1"))


@dataclass
class Replay:
    days: int
    since: str
    total: Money
    by_key: dict[str, Money]
    by_group: dict[str, Money]
    by_model: dict[str, Money]
    denied: dict[str, int]  # key -> requests NEW would refuse
    denied_reasons: dict[str, int]  # reason -> requests
    rerouted: dict[str, int]  # requested model -> requests NEW would send elsewhere
    unpriced: int  # rows NEW has no price for (their new cost counts as 0)
    denied_by_old: int = 0  # of the denied requests, those OLD would refuse as well
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    old: dict[str, str]
    new: dict[str, str]
    changes: list[Change]
    replay: Replay | None = None

    def by_section(self) -> dict[str, list[Change]]:
        out: dict[str, list[Change]] = {name: [] for name in SECTIONS}
        for change in self.changes:
            out[change.section].append(change)
        return {name: items for name, items in out.items() if items}

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        return summary_line(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "changed": self.changed,
            "summary": self.summary(),
            "changes": {
                name: [
                    {"subject": c.subject, "change": c.kind, "details": list(c.details), **c.data}
                    for c in items
                ]
                for name, items in self.by_section().items()
            },
            "replay": _replay_json(self.replay) if self.replay else None,
        }


def usd(value: Decimal, signed: bool = False) -> str:
    cents = value.quantize(Decimal("0.01"))
    text = f"${abs(cents):,.2f}"
    if signed:
        return ("+" if cents >= 0 else "-") + text
    return ("-" if cents < 0 else "") + text


def summary_line(report: Report) -> str:
    """`3 keys lose access to gpt-4o; spend +12.4% ($1,204.33) on last 30 days`."""
    parts: list[str] = []
    lost: Counter[str] = Counter()
    gained: Counter[str] = Counter()
    for change in report.changes:
        if change.section == "access":
            lost.update(change.data.get("lost", []))
            gained.update(change.data.get("gained", []))
    parts += _access_phrases(lost, "lose")
    parts += _access_phrases(gained, "gain")
    counts = Counter(c.section for c in report.changes if c.section not in ("access",))
    parts += [f"{n} {NOUNS[s]} change{'s' if n != 1 else ''}" for s, n in sorted(
        counts.items(), key=lambda sn: list(SECTIONS).index(sn[0]))]
    replay = report.replay
    if replay is not None:
        pct = replay.total.percent()
        share = f"{'+' if replay.total.delta >= 0 else ''}{pct}% " if pct is not None else ""
        parts.append(f"spend {share}({usd(replay.total.delta, signed=True)}) on last {replay.days} days")
        denied = sum(replay.denied.values())
        if denied:
            parts.append(f"{denied} request{'s' if denied != 1 else ''} of {len(replay.denied)} "
                         f"key{'s' if len(replay.denied) != 1 else ''} would be denied"
                         + (f" ({replay.denied_by_old} by OLD too)" if replay.denied_by_old else ""))
    if not parts:
        return "no changes"
    return "; ".join(parts)


def _access_phrases(counter: Counter[str], verb: str) -> list[str]:
    if not counter:
        return []
    (model, n), rest = counter.most_common(1)[0], len(counter) - 1
    more = f" (and {rest} more model{'s' if rest != 1 else ''})" if rest else ""
    return [f"{n} key{'s' if n != 1 else ''} {verb}{'s' if n == 1 else ''} access to {model}{more}"]


def _money_json(m: Money) -> dict[str, Any]:
    pct = m.percent()
    return {"old_usd": str(m.old), "new_usd": str(m.new), "delta_usd": str(m.delta),
            "delta_percent": None if pct is None else str(pct), "requests": m.requests}


def _replay_json(r: Replay) -> dict[str, Any]:
    out = asdict(r)
    out["total"] = _money_json(r.total)
    for name in ("by_key", "by_group", "by_model"):
        out[name] = {k: _money_json(v) for k, v in getattr(r, name).items()}
    return out
