"""The report as a terminal table (rich), as Markdown for a pull-request comment, or as JSON."""

from __future__ import annotations

import json
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .report import SECTIONS, Money, Replay, Report, usd

_STYLES = {"added": "green", "enabled": "green", "removed": "red", "disabled": "red", "expired": "red",
           "expiring": "yellow", "changed": "yellow", "moved": "cyan"}


def render(report: Report, fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
    elif fmt == "markdown":
        out.write(markdown(report))
    else:
        terminal(report, out)


def _header(report: Report) -> str:
    return (f"{report.old['label']} ({report.old['revision']}) -> "
            f"{report.new['label']} ({report.new['revision']})")


def terminal(report: Report, out: IO[str]) -> None:
    console = Console(file=out, highlight=False, width=max(100, Console(file=out).width))
    console.print(f"[bold]tollgate diff[/bold] {escape(_header(report))}")
    console.print(f"[bold]{escape(report.summary())}[/bold]")
    for name, items in report.by_section().items():
        table = Table(title=SECTIONS[name], title_justify="left", show_lines=False)
        table.add_column("subject", style="bold")
        table.add_column("change")
        table.add_column("details")
        for c in items:
            style = _STYLES.get(c.kind, "")
            kind = f"[{style}]{c.kind}[/{style}]" if style else c.kind
            table.add_row(escape(c.subject), kind, escape("\n".join(c.details)))
        console.print(table)
    if report.replay is not None:
        _terminal_replay(console, report.replay)


def _money_cells(m: Money) -> list[str]:
    pct = m.percent()
    delta = usd(m.delta, signed=True)
    colour = "red" if m.delta > 0 else "green" if m.delta < 0 else ""
    return [str(m.requests), usd(m.old), usd(m.new), f"[{colour}]{delta}[/{colour}]" if colour else delta,
            "" if pct is None else f"{pct:+}%"]


def _terminal_replay(console: Console, replay: Replay) -> None:
    for title, items in _replay_tables(replay):
        table = Table(title=title, title_justify="left")
        for col in ("", "requests", "old", "new", "delta", "%"):
            table.add_column(col, justify="left" if not col else "right")
        for name, money in items:
            table.add_row(escape(name), *_money_cells(money))
        console.print(table)
    for line in _replay_lines(replay):
        console.print(escape(line))


def _replay_tables(replay: Replay) -> list[tuple[str, list[tuple[str, Money]]]]:
    def changed(d: dict[str, Money]) -> list[tuple[str, Money]]:
        moved = [(k, m) for k, m in d.items() if m.delta != 0]
        return sorted(moved, key=lambda kv: (-abs(kv[1].delta), kv[0]))

    title = f"Replay: last {replay.days} days (since {replay.since})"
    return [
        (title, [("total", replay.total)]),
        ("Cost per key (changed)", changed(replay.by_key)),
        ("Cost per group (changed)", changed(replay.by_group)),
        ("Cost per model (changed)", changed(replay.by_model)),
    ]


def _replay_lines(replay: Replay) -> list[str]:
    lines = []
    if replay.denied:
        ranked = sorted(replay.denied.items(), key=lambda kv: (-kv[1], kv[0]))
        keys = ", ".join(f"{k} ({n})" for k, n in ranked)
        why = ", ".join(f"{r}: {n}" for r, n in sorted(replay.denied_reasons.items()))
        also = f"; {replay.denied_by_old} of them by OLD too" if replay.denied_by_old else ""
        lines.append(f"Would be denied: {sum(replay.denied.values())} requests ({why}{also}); keys: {keys}")
    if replay.rerouted:
        moved = ", ".join(f"{m} ({n})" for m, n in sorted(replay.rerouted.items()))
        lines.append(f"Would route elsewhere: {sum(replay.rerouted.values())} requests; models: {moved}")
    if replay.unpriced:
        lines.append(f"No price in NEW: {replay.unpriced} requests (counted as $0)")
    lines += [f"Note: {n}" for n in replay.notes]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown(report: Report) -> str:
    lines = [f"**{report.summary()}**", "", f"`tollgate diff` {_cell(_header(report))}", ""]
    for name, items in report.by_section().items():
        lines += [f"### {SECTIONS[name]}", "", "| subject | change | details |", "|---|---|---|"]
        lines += [f"| `{_cell(c.subject)}` | {c.kind} | {_cell('<br>'.join(c.details))} |" for c in items]
        lines.append("")
    if report.replay is not None:
        for title, money in _replay_tables(report.replay):
            if not money:
                continue
            lines += [f"### {title}", "", "| | requests | old | new | delta | % |",
                      "|---|--:|--:|--:|--:|--:|"]
            for label, m in money:
                pct = m.percent()
                lines.append(f"| {_cell(label)} | {m.requests} | {usd(m.old)} | {usd(m.new)} | "
                             f"{usd(m.delta, signed=True)} | {'' if pct is None else f'{pct:+}%'} |")
            lines.append("")
        lines += [f"- {_cell(line)}" for line in _replay_lines(report.replay)]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"

