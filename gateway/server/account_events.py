"""Events about a client key's money, noticed where the limiter admits a request: `balance_low`
when a prepaid key's balance (the `x-tollgate-balance-usd` the limiter computed, before this
request) is below its `low_balance_usd`; `budget_threshold` when the most used budget of the key
(or its group) passes 50, 80, 90 or 100% of its limit, once per mark in this worker until the
spend goes down again (a new period). Only an event is queued (alerts/dispatcher.py);
deduplication per subject and window across workers happens there."""

from __future__ import annotations

from ..alerts.events import Event
from ..billing.credits import BALANCE_HEADER
from ..billing.limits import Admission
from ..config.snapshot import KeyRuntime
from .http import Headers
from .state import WorkerState


def check_balance(state: WorkerState, key: KeyRuntime, headers: Headers) -> None:
    prepaid = key.prepaid
    if prepaid is None or prepaid.low_balance_usd is None or state.alerts is None:
        return
    for name, value in headers:
        if name == BALANCE_HEADER:
            balance = float(value)
            if balance < prepaid.low_balance_usd:
                fields = {"key_id": key.id, "balance_usd": round(balance, 6),
                          "threshold_usd": prepaid.low_balance_usd}
                state.emit(Event("balance_low", fields, key.id))
            return


BUDGET_MARKS = (0.5, 0.8, 0.9, 1.0)


def check_budget(state: WorkerState, key: KeyRuntime, admission: Admission) -> None:
    if state.alerts is None:
        return
    budget = admission.budget  # computed here: only this alert reads it
    if budget is None:
        return
    spend, limit, period, scope = budget
    fraction = spend / limit if limit else 0.0
    mark = max((m for m in BUDGET_MARKS if fraction >= m), default=0.0)
    seen = state.budget_marks.get((scope, period), 0.0)
    if mark <= seen:
        if mark < seen:  # spend went down: a new period
            state.budget_marks[(scope, period)] = mark
        return
    state.budget_marks[(scope, period)] = mark
    fields = {"key_id": key.id, "scope": scope, "budget_usd": limit, "spend_usd": round(spend, 6),
              "fraction": round(fraction, 4), "mark": mark, "period": period}
    state.emit(Event("budget_threshold", fields, f"{scope}:{period}:{mark}"))
