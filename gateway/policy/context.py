"""What CEL rules see about one request: `request`, `key`, `usage`, `now`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from celpy import celtypes


@dataclass(slots=True)
class RequestView:
    model: str = ""
    endpoint: str = ""
    stream: bool = False
    message_count: int = 0
    max_tokens: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ip: str = ""

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, model: str = "", endpoint: str = "", stream: bool = False, message_count: int = 0,
                 max_tokens: int = 0, metadata: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, ip: str = "") -> None:
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.message_count = message_count
        self.max_tokens = max_tokens
        self.metadata = metadata if metadata is not None else {}
        self.headers = headers if headers is not None else {}
        self.ip = ip


@dataclass(slots=True)
class KeyView:
    id: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, id: str = "", group: str = "", tags: list[str] | None = None) -> None:
        self.id = id
        self.group = group
        self.tags = tags if tags is not None else []


@dataclass(slots=True)
class UsageView:
    spend_usd: float = 0.0
    budget_usd: float = 0.0
    budget_fraction: float = 0.0
    rpm: int = 0
    tpm: int = 0

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, spend_usd: float = 0.0, budget_usd: float = 0.0, budget_fraction: float = 0.0,
                 rpm: int = 0, tpm: int = 0) -> None:
        self.spend_usd = spend_usd
        self.budget_usd = budget_usd
        self.budget_fraction = budget_fraction
        self.rpm = rpm
        self.tpm = tpm


class Facts:
    """The activation source for rules: values are read lazily, only those a rule references."""

    __slots__ = ("_now", "key", "request", "usage")

    def __init__(self, request: RequestView, key: KeyView, usage: UsageView | None = None) -> None:
        self.request = request
        self.key = key
        self.usage = usage or UsageView()
        self._now: Any = None

    def lookup(self, root: str, name: str | None) -> Any:
        if root == "now":
            if self._now is None:
                self._now = celtypes.TimestampType(datetime.now(UTC))
            return self._now
        obj = getattr(self, root)
        if name is None:
            return asdict(obj)
        return getattr(obj, name)
