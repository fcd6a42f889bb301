"""`[[alert]]` entries compiled: the events and their fields (what `when` and `text` may read),
CEL compiled once, `${ENV}` resolved, secrets handed to the redactor. Delivery: gateway/alerts/.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

from ..policy.cel import CelCompileError, CompiledExpr, compile_expr
from ..redact import is_secret_header
from .load import Loc, Located, ReportError
from .types import Alert

COMMON_FIELDS = ("event", "at", "summary")
# The fields each event carries (docs/operations.md lists them with their meaning).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "breaker_open": ("provider", "failures", "window_s", "cooldown_s"),
    "breaker_closed": ("provider", "open_s"),
    "key_benched": ("provider", "key_index", "key", "status", "reason", "until"),
    "key_restored": ("provider", "key_index", "key", "reason"),
    "budget_threshold": ("key_id", "scope", "budget_usd", "spend_usd", "fraction", "mark", "period"),
    "balance_low": ("key_id", "balance_usd", "threshold_usd"),
    "reload_failed": ("directory", "problems", "message"),
    "upstream_error_rate": ("provider", "error_rate", "requests", "errors", "window_s"),
}

Interpolate = Callable[..., str]


@dataclass(frozen=True, slots=True)
class AlertRuntime:
    id: str
    on: str
    url: str
    when: CompiledExpr | None
    headers: tuple[tuple[str, str], ...]
    secret: str | None
    signature_header: str
    format: str
    text: str | None
    dedup_s: float
    timeout_s: float
    attempts: int
    backoff_s: float

    def __repr__(self) -> str:  # the URL, headers and secret may all be credentials
        return f"AlertRuntime(id={self.id!r}, on={self.on!r})"


def event_variables(event: str) -> dict[str, frozenset[str]]:
    return {"event": frozenset(COMMON_FIELDS + EVENT_FIELDS[event])}


def template_fields(text: str) -> list[str]:
    """The `{name}` placeholders of a text template (ValueError: a malformed one)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def compile_alerts(
    alerts: list[Located[Alert]], interpolate: Interpolate, error: ReportError, secrets: set[str]
) -> tuple[AlertRuntime, ...]:
    return tuple(a for a in (_compile(x, interpolate, error, secrets) for x in alerts) if a is not None)


def _compile(
    located: Located[Alert], interpolate: Interpolate, error: ReportError, secrets: set[str]
) -> AlertRuntime | None:
    a, loc = located.item, located.loc
    url = interpolate(a.url, loc, "url")
    if "${" in a.url:
        secrets.add(url)  # a Slack-style webhook URL is itself a credential
    if url and not url.startswith(("http://", "https://")):
        error(loc, f'alert url "{a.url}" must start with http:// or https://', "url")
    headers = []
    for name, template in a.headers.items():
        value = interpolate(template, loc, "headers", name)
        if is_secret_header(name, template):
            secrets.add(value)
        headers.append((name.lower(), value))
    secret = interpolate(a.secret, loc, "secret") if a.secret is not None else None
    if secret:
        secrets.add(secret)
    _check_text(a, loc, error)
    when = _compile_when(a, loc, error)
    return AlertRuntime(
        id=a.id, on=a.on, url=url, when=when, headers=tuple(headers), secret=secret,
        signature_header=a.signature_header.lower(), format=a.format, text=a.text, dedup_s=a.dedup_s,
        timeout_s=a.timeout_s, attempts=a.attempts, backoff_s=a.backoff_s,
    )


def _check_text(a: Alert, loc: Loc, error: ReportError) -> None:
    if a.text is None:
        return
    known = set(COMMON_FIELDS + EVENT_FIELDS[a.on])
    try:
        names = template_fields(a.text)
    except ValueError as exc:
        error(loc, f"text template: {exc}", "text")
        return
    for name in names:
        if name not in known:
            error(loc, f"text template: {a.on} has no field {{{name}}} (known: {', '.join(sorted(known))})",
                  "text")


def _compile_when(a: Alert, loc: Loc, error: ReportError) -> CompiledExpr | None:
    if a.when is None:
        return None
    try:
        return compile_expr(a.when, event_variables(a.on))
    except CelCompileError as exc:
        error(loc, f"alert {a.id!r}: CEL {exc}", "when")
        return None
