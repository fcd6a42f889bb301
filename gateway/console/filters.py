"""Query-string filters of the console's pages, parsed strictly into a typed `Filter`: a bad
value is a `BadParameter` naming the parameter (a 400 page). Values only ever reach SQL as bound
parameters (queries.py)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qsl, urlencode

RANGES: dict[str, dt.timedelta] = {
    "1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30), "90d": dt.timedelta(days=90),
}
Bucket = Literal["hour", "day"]
Dimension = Literal["key", "group", "model", "provider"]
Status = Literal["any", "ok", "error"]
_TEXT = re.compile(r"^[\w.:/@+-]{1,200}$")  # ids, model names, provider ids
TEXT_FIELDS = ("key", "group", "model", "provider")
FIELDS = frozenset({"range", "since", "until", "bucket", "by", "status", "limit", *TEXT_FIELDS})


class BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter `{name}`: {message}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Filter:
    since: dt.datetime
    until: dt.datetime
    range: str = "24h"  # the preset, or "custom" with since/until given
    bucket: Bucket = "hour"
    by: Dimension = "model"
    status: Status = "any"
    limit: int = 100
    key: str | None = None
    group: str | None = None
    model: str | None = None
    provider: str | None = None

    def query(self, **changes: str | int | None) -> str:
        """This filter as a query string (with `changes`), for links and downloads."""
        doc: dict[str, str | int | None] = {
            "range": self.range, "bucket": self.bucket, "by": self.by, "status": self.status,
            "limit": self.limit, "key": self.key, "group": self.group, "model": self.model,
            "provider": self.provider,
        }
        if self.range == "custom":
            doc["since"], doc["until"] = self.since.isoformat(), self.until.isoformat()
        doc.update(changes)
        return urlencode({k: v for k, v in doc.items() if v is not None})

    def for_key(self, key_id: str) -> Filter:
        return replace(self, key=key_id)


def parse(query_string: str, allowed: frozenset[str] = FIELDS, now: dt.datetime | None = None) -> Filter:
    now = now or dt.datetime.now(dt.UTC)
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
    except ValueError:
        raise BadParameter("query", "too many parameters") from None
    args: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise BadParameter(name[:40], "unknown parameter")
        if name in args:
            raise BadParameter(name, "given more than once")
        args[name] = value
    return _build({k: v for k, v in args.items() if v != ""}, now)


def _build(args: dict[str, str], now: dt.datetime) -> Filter:
    preset = args.get("range", "24h")
    if preset not in RANGES and preset != "custom":
        raise BadParameter("range", f"must be one of {', '.join(RANGES)} or custom")
    since, until = now - RANGES.get(preset, RANGES["24h"]), now
    explicit = preset == "custom" or "range" not in args
    if explicit and ("since" in args or "until" in args):
        preset = "custom"
        since = _time(args, "since", since)
        until = _time(args, "until", until)
        if until <= since:
            raise BadParameter("until", "must be after since")
    default_bucket: Bucket = "hour" if until - since <= dt.timedelta(days=2) else "day"
    return Filter(
        since=since, until=until, range=preset,
        bucket=_choice(args, "bucket", ("hour", "day"), default_bucket),  # type: ignore[arg-type]
        by=_choice(args, "by", ("key", "group", "model", "provider"), "model"),  # type: ignore[arg-type]
        status=_choice(args, "status", ("any", "ok", "error"), "any"),  # type: ignore[arg-type]
        limit=_limit(args.get("limit")),
        key=_text(args, "key"), group=_text(args, "group"), model=_text(args, "model"),
        provider=_text(args, "provider"),
    )


def _time(args: dict[str, str], name: str, default: dt.datetime) -> dt.datetime:
    text = args.get(name)
    if text is None:
        return default
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(name, "must be an ISO date or time, e.g. 2026-01-31 or 2026-01-31T12:00") from None
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp


def _choice(args: dict[str, str], name: str, options: tuple[str, ...], default: str) -> str:
    value = args.get(name, default)
    if value not in options:
        raise BadParameter(name, f"must be one of {', '.join(options)}")
    return value


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise BadParameter("limit", "must be a whole number from 1 to 1000")
    return int(text)


def _text(args: dict[str, str], name: str) -> str | None:
    value = args.get(name)
    if value is not None and not _TEXT.match(value):
        raise BadParameter(name, "must be 1-200 letters, digits or . _ : / @ + -")
    return value
