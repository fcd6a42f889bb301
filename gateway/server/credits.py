"""Prepaid credits over HTTP (docs/credits.md):

    POST /admin/credits            {"key", "usd", "note"?, "reference"?, "kind"?}   (admin key)
    GET  /admin/credits/{key}      balance and newest entries                        (admin key)
    POST /v1/dashboard/redeem      {"code"}                                           (client key)

Entries are booked by the ledger owner and checkpointed before the answer; the new credits
total then goes straight into the limiter's store, so the key can spend it on its next request.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import msgspec

from ..errors import ClientError, GatewayError, InvalidRequest, NotFound, RateLimited, UpstreamError
from ..providers.wire.head import TOO_DEEP
from ..usage.client import LedgerUnavailable
from ..usage.credits_client import (
    Asker,
    CreditRefused,
    add_credit,
    credit_book,
    key_balance,
    ledger_of,
    redeem_for_key,
)
from .auth import authenticate, authenticate_admin, presented_key
from .envelope import Call
from .http import client_ip, json_body, send_json
from .intake import read_body
from .state import WorkerState

PREFIX = "/admin/credits/"


class _TopUp(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    usd: Any  # a number or a decimal string; checked by parse_usd
    note: str | None = None
    reference: str | None = None
    kind: str = "topup"


class _Redeem(msgspec.Struct, forbid_unknown_fields=True):
    code: str


def _ledger(state: WorkerState) -> Asker:
    ledger = ledger_of(state.recorder)
    if ledger is None:
        raise UpstreamError("the usage ledger is not enabled on this gateway", status=503,
                            code="ledger_unavailable")
    return ledger


def _refused(exc: CreditRefused | LedgerUnavailable) -> GatewayError:
    if isinstance(exc, LedgerUnavailable):
        return UpstreamError(f"usage ledger unavailable: {exc}", status=503, code="ledger_unavailable")
    if exc.status >= 500:
        return UpstreamError(exc.message, status=exc.status, code=exc.code)
    return ClientError(exc.message, code=exc.code, status=exc.status)


async def _decode(call: Call, kind: type[Any], shape: str) -> Any:
    body = json_body(call.scope, await read_body(call.scope, call.proto, 1 << 16))
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"send {shape}: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"{TOO_DEEP}: send {shape}") from None


async def _apply(state: WorkerState, answer: dict[str, Any]) -> None:
    """The key's new credits total into the limiter's store (all workers see it via Redis)."""
    book = credit_book(state.limiter)
    if book is not None:
        await book.apply(str(answer["key_id"]), Decimal(answer["credits"]), int(answer["seq"]))


def _summary(answer: dict[str, Any]) -> dict[str, Any]:
    return {"entry": answer["entry"], "duplicate": answer["duplicate"], "credits_usd": answer["credits"],
            "spent_usd": answer["spent"], "balance_usd": answer["balance"]}


async def top_up(call: Call) -> None:
    admin = authenticate_admin(call.snap, presented_key(call.scope))
    body = await _decode(call, _TopUp, '{"key": "KEY_ID", "usd": 10, "note": "...", "reference": "..."}')
    if body.key not in call.snap.keys_by_id:
        raise NotFound(f"unknown key {body.key[:128]!r}: no such key in the policy bundle",
                       code="unknown_key", param="key")
    try:
        answer = await add_credit(_ledger(call.state), body.key, body.usd, kind=body.kind, note=body.note,
                                  reference=body.reference, actor=f"admin:{admin.id}",
                                  revision=call.snap.revision)
    except (CreditRefused, LedgerUnavailable) as exc:
        raise _refused(exc) from None
    await _apply(call.state, answer)
    send_json(call.proto, 200 if answer["duplicate"] else 201, _summary(answer))


async def balance(call: Call) -> None:
    authenticate_admin(call.snap, presented_key(call.scope))
    key_id = unquote(call.scope.path.removeprefix(PREFIX))
    if key_id not in call.snap.keys_by_id:
        raise NotFound(f"unknown key {key_id[:128]!r}: no such key in the policy bundle", code="unknown_key")
    try:
        found = await key_balance(_ledger(call.state), key_id)
    except (CreditRefused, LedgerUnavailable) as exc:
        raise _refused(exc) from None
    key = call.snap.keys_by_id[key_id]
    doc = found.to_json()
    doc["billing"] = "prepaid" if key.prepaid is not None else "postpaid"
    if key.prepaid is not None:
        low = key.prepaid.low_balance_usd
        doc["credit_limit_usd"] = key.prepaid.credit_limit
        doc["low_balance_usd"] = low
        doc["low_balance"] = low is not None and found.balance_usd < Decimal(str(low))
    send_json(call.proto, 200, doc)


async def redeem(call: Call) -> None:
    key = authenticate(call.snap, presented_key(call.scope),
                       client_ip(call.scope, call.state.settings.trust_forwarded))
    body = await _decode(call, _Redeem, '{"code": "TG-XXXX-XXXX-XXXX-XXXX-XX"}')
    try:  # the attempt limit, the owner's redemption, the limiter's new total (shared with the console)
        answer = await redeem_for_key(ledger_of(call.state.recorder), credit_book(call.state.limiter),
                                      body.code, key_id=key.id, group=key.group.id if key.group else None,
                                      revision=call.snap.revision)
    except CreditRefused as exc:
        if exc.retry_after_s is not None:
            raise RateLimited(exc.message, code=exc.code,
                              headers=(("retry-after", str(exc.retry_after_s)),)) from None
        raise _refused(exc) from None
    doc = _summary(answer)
    doc["redeemed_usd"] = answer["entry"]["amount_usd"]
    send_json(call.proto, 200, doc)
