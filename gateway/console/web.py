"""What the console needs of the server, as Protocols: the console sits below `server/` in the
package layers (server/routes.py routes `/console/` here), so it names no server type."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from ..config.reload import PolicyStore
from ..ops.health import HealthStats
from ..providers.keyring import KeyRing
from ..routing.breaker import Breakers
from ..worker_settings import WorkerSettings


class Headers(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


class Scope(Protocol):
    method: str
    path: str
    query_string: str
    client: str
    headers: Headers


class Proto(Protocol):
    def __call__(self) -> Awaitable[bytes]: ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...

    def response_file(self, status: int, headers: list[tuple[str, str]], file: str) -> None: ...


class Worker(Protocol):
    """The serving worker's live state (server/state.py's WorkerState)."""

    settings: WorkerSettings
    store: PolicyStore
    breakers: Breakers
    counters: dict[tuple[str, int], int]
    health: HealthStats  # per provider key: in flight, outcomes (ops/health.py)

    @property
    def recorder(self) -> object: ...  # the usage ledger (usage/ledger.py): a redemption asks its owner

    @property
    def limiter(self) -> object: ...  # its credit book and redemption attempt rate (billing/credits.py)

    def keyrings(self) -> dict[str, KeyRing]: ...
