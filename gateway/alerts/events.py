"""Events: what happened (`name`, one of config/alerts.py's EVENT_FIELDS), its fields (what an
alert's `when` and `text` read), and its subject (what deduplication is per: a provider, a
provider's key, a client key). Keys appear masked (`sk-...a1b2`) and by index, never whole."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config.alerts import EVENT_FIELDS

SUMMARIES = {
    "breaker_open": "provider {provider}: circuit opened after {failures} failures in {window_s}s",
    "breaker_closed": "provider {provider}: circuit closed again after {open_s}s",
    "key_benched": "provider {provider}: key #{key_index} ({key}) benched: HTTP {status}: {reason}",
    "key_restored": "provider {provider}: key #{key_index} ({key}) restored: {reason}",
    "budget_threshold": "{scope} has spent ${spend_usd} of its ${budget_usd} {period} budget (over {mark})",
    "balance_low": "key {key_id}: balance ${balance_usd} is below ${threshold_usd}",
    "reload_failed": "policy reload of {directory} failed: {message}",
    "upstream_error_rate": "provider {provider}: {errors} of {requests} requests failed in {window_s}s",
}


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    fields: dict[str, Any]
    subject: str
    at: float = field(default_factory=time.time)

    def document(self) -> dict[str, Any]:
        """The event as alerts see it: its fields, `event`, `at` (ISO 8601) and `summary`."""
        doc = {f: self.fields.get(f) for f in EVENT_FIELDS[self.name]}
        doc.update(event=self.name, at=datetime.fromtimestamp(self.at, UTC).isoformat())
        doc["summary"] = SUMMARIES[self.name].format_map(Placeholders(doc))
        return doc


class Placeholders(dict[str, Any]):
    """A template's values: a field the event lacks reads as `?` rather than failing."""

    def __missing__(self, key: str) -> str:
        return "?"


def key_event(name: str, provider: str, index: int, masked: str, status: int, reason: str,
              until: float | None) -> Event:
    until_iso = None if until is None else datetime.fromtimestamp(until, UTC).isoformat()
    return Event(name, {"provider": provider, "key_index": index, "key": masked, "status": status,
                        "reason": reason, "until": until_iso}, f"{provider}#{index}")


def breaker_event(provider: str, state: str, open_s: float, failures: int, window_s: float,
                  cooldown_s: float) -> Event:
    if state == "open":
        fields: dict[str, Any] = {"provider": provider, "failures": failures, "window_s": window_s,
                                  "cooldown_s": cooldown_s}
        return Event("breaker_open", fields, provider)
    return Event("breaker_closed", {"provider": provider, "open_s": round(open_s, 1)}, provider)


SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "breaker_open": {"provider": "openai", "failures": 3, "window_s": 30.0, "cooldown_s": 15.0},
    "breaker_closed": {"provider": "openai", "open_s": 42.0},
    "key_benched": {"provider": "openai", "key_index": 0, "key": "sk-...a1b2", "status": 401,
                    "reason": "Incorrect API key provided", "until": None},
    "key_restored": {"provider": "openai", "key_index": 0, "key": "sk-...a1b2", "reason": "test passed"},
    "budget_threshold": {"key_id": "team-a", "scope": "key `team-a`", "budget_usd": 100.0, "spend_usd": 80.5,
                         "fraction": 0.805, "mark": 0.8, "period": "month"},
    "balance_low": {"key_id": "team-a", "balance_usd": 4.5, "threshold_usd": 5.0},
    "reload_failed": {"directory": "policies", "problems": 1,
                      "message": "policies/keys.toml:3: key[0].hash: expected a sha256 hash"},
    "upstream_error_rate": {"provider": "openai", "error_rate": 0.5, "requests": 20, "errors": 10,
                            "window_s": 60.0},
}


def sample(name: str) -> Event:
    """A made-up event for `tollgate alerts test`."""
    return Event(name, dict(SAMPLE_FIELDS[name]), "sample")
