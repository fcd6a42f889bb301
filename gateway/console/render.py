"""Jinja2 templates (templates/), autoescaped: every value from the ledger, the bundle or the
request is escaped in HTML; chart data goes in as JSON through `tojson` (escaped for HTML)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@cache
def environment() -> jinja2.Environment:
    import jinja2  # on the first page, not in every worker's start-up

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=usd, num=num, ms=ms, pct=pct)
    return env


def page(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def usd(value: Any) -> str:
    if value is None or value == "":
        return "-"
    amount = float(value)
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.6f}" if abs(amount) < 0.01 else f"${amount:.4f}"


def num(value: Any) -> str:
    if value is None or value == "":
        return "-"
    number = float(value)
    return f"{int(number):,}" if number == int(number) else f"{number:,.2f}"


def ms(value: Any) -> str:
    return "-" if value is None or value == "" else f"{float(value):,.0f} ms"


def pct(value: Any) -> str:
    return "-" if value is None or value == "" else f"{float(value) * 100:.1f}%"
