"""The usage rows a task leaves after its submit: a refund (the negated charge) when it fails,
and an end row (no cost) when it finishes, so the ledger knows each task's outcome and
duration (the `tasks` view, usage/schema.py). Both carry the task id and are derived from the
submit's request id: `<request_id>-refund`, `<request_id>-done`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from ..usage.record import UsageRecord
from .store import TaskRow


def _base(task: TaskRow, suffix: str) -> UsageRecord:
    now = datetime.now(UTC)
    return UsageRecord(
        request_id=f"{task.request_id}-{suffix}",
        started_at=now,
        finished_at=now,
        key_id=task.key_id,
        group=task.group,
        tags=list(task.tags),
        endpoint=task.endpoint,
        requested_model=task.requested_model,
        served_model=task.model,
        provider=task.provider,
        status=200,
        policy_revision=task.revision,
        task_id=task.id,
    )


def refund_row(task: TaskRow, refund_type: str) -> UsageRecord:
    assert task.cost is not None
    row = _base(task, "refund")
    row.error_type, row.cost_usd, row.usage_source = refund_type, -task.cost, "upstream"
    return row


def done_row(task: TaskRow, failed: bool) -> UsageRecord:
    """The task's end: latency_ms is its duration from submit to the end seen."""
    row = _base(task, "done")
    row.cost_usd = Decimal(0)
    row.error_type = "task_failed" if failed else "task_succeeded"  # a marker row, not a served request
    row.latency_ms = round(max(time.time() - task.submitted_at, 0.0) * 1000, 3)
    return row
