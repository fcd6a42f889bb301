"""A key holder redeems a code onto the signed-in key (`POST /console/me/redeem`, a form of the
key view): the same path as `POST /v1/dashboard/redeem` (usage/credits_client.py
`redeem_for_key`: the per-key attempt limit, the owner's redemption, the limiter's new total).

The answer is a redirect back to the key view (post-redirect-get); the outcome travels in a
short-lived cookie signed like the session and bound to the key, shown once and then cleared."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from ..config.snapshot import KeyRuntime, Snapshot
from ..usage.credits_client import CreditRefused, credit_book, ledger_of, redeem_for_key
from .session import Signer
from .web import Worker

FLASH_COOKIE = "tg_console_flash"
FLASH_S = 120  # the redirect is followed at once; an unread outcome does not linger


class Outcome(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    subject: str  # the key it was redeemed onto: shown only to that key's session
    expires: int
    ok: bool
    code: str  # "redeemed", or the refusal's code (invalid_code, code_already_redeemed, ...)
    message: str
    amount_usd: str | None = None
    balance_usd: str | None = None


async def redeem(worker: Worker, snap: Snapshot, key: KeyRuntime, code: str) -> Outcome:
    expires = int(time.time()) + FLASH_S
    try:
        answer = await redeem_for_key(ledger_of(worker.recorder), credit_book(worker.limiter), code.strip(),
                                      key_id=key.id, group=key.group.id if key.group else None,
                                      revision=snap.revision)
    except CreditRefused as exc:
        return Outcome(key.id, expires, False, exc.code, exc.message)
    amount, balance = str(answer["entry"]["amount_usd"]), str(answer["balance"])
    message = f"Code redeemed: {_usd(amount)} credited to this key; its balance is now {_usd(balance)}."
    return Outcome(key.id, expires, True, "redeemed", message, amount, balance)


def flash(signer: Signer, outcome: Outcome) -> str:
    return signer.sign("flash", msgspec.json.encode(outcome))


def read_flash(signer: Signer, cookie: str | None, subject: str) -> Outcome | None:
    """The outcome in the cookie, if it is ours, unexpired and for this key; else None."""
    body = signer.verify("flash", cookie) if cookie else None
    if body is None:
        return None
    try:
        outcome = msgspec.json.decode(body, type=Outcome)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return outcome if outcome.subject == subject and outcome.expires > time.time() else None


def _usd(amount: str) -> str:
    """The exact amount, without the ledger's trailing zeros: 0.200000000 -> $0.20, 12.5 -> $12.50."""
    value = Decimal(amount).normalize()
    text = f"{value:f}"
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"
