"""Events about a client key's money, noticed where the limiter admits a request: `balance_low`
when a prepaid key's balance (the `x-tollgate-balance-usd` the limiter computed, before this
request) is below its `low_balance_usd`. Only an event is queued (alerts/dispatcher.py);
deduplication per key and window happens there."""

from __future__ import annotations

from ..alerts.events import Event
from ..billing.credits import BALANCE_HEADER
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
