"""What each task family implements for the engine (engine.py).

A family's front door (gateway/server/<family>/) submits: it parses the client's body, routes
and admits like any request, forwards through the attempt engine, prices the task (its
`price`), and stores it with `TaskEngine.add`. After that, the engine owns the task: it asks
the family's adapter what the upstream says now (`fetch`), which maps the upstream's status and
result into the family's client dialect (`Seen`), and settles: a task that ends in a FAILED
status (store.py) is refunded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .store import FAILED, TaskRow


@dataclass(frozen=True, slots=True)
class Seen:
    """A task as its upstream reports it now, mapped into the client's dialect."""

    status: str  # the client dialect's status (a FAILED one means: refund)
    doc: bytes  # the task document the client reads, under the gateway's id
    finished: bool  # no further change expected

    @property
    def failed(self) -> bool:
        return self.status in FAILED


class TaskAdapter(Protocol):
    family: str  # the store's `family` column: midjourney | video | suno
    refund_type: str  # the refund row's error_type, e.g. mj_refund

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        """The task as its upstream sees it now; None when it cannot tell (unreachable, the
        provider removed from the bundle, an answer it cannot read): the stored task stands.
        `hint` is dialect-specific (Midjourney: the mode prefix of the client's path)."""
        ...
