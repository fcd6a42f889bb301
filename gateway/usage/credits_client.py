"""Credits from any worker (or the console): typed calls over the ledger owner's socket.

    balance = await key_balance(ledger, "team-a")       # KeyBalance: credits, spent, balance, history
    answer = await add_credit(ledger, "team-a", "10", note="invoice 42", reference="inv-42", actor="ops")
    answer = await redeem_code(ledger, "TG-...", key_id="team-a", group="pro", actor="team-a")
    answer = await redeem_for_key(ledger_of(state.recorder), credit_book(state.limiter), "TG-...",
                                  key_id="team-a", group="pro", revision=snap.revision)

`redeem_for_key` is a client key's whole redemption (POST /v1/dashboard/redeem and the console's
key-holder view): the per-key attempt limit, the owner's check and insert, the new credits total
into the limiter's store. Each raises `CreditRefused` (a clear refusal: `code`, `status`,
message) or `LedgerUnavailable` (`redeem_for_key`: only `CreditRefused`).
`LedgerCredits` is what the limiter reads a prepaid key's credits through (billing/credits.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, cast

from ..billing.credits import CreditBook, redeem_attempt
from ..billing.store import StateUnavailable
from .client import LedgerUnavailable
from .codes import BadCode, code_hash
from .credits_store import CreditError, check_key_id, parse_usd


class CreditRefused(Exception):
    def __init__(self, code: str, message: str, status: int = 400, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.retry_after_s = retry_after_s  # too_many_redemptions: when the next attempt is allowed


class Asker(Protocol):
    """The worker's `Ledger` (ledger.py): `ask` reaches the owner, or becomes it."""

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class KeyBalance:
    key_id: str
    credits_usd: Decimal  # sum of its credit entries
    spent_usd: Decimal  # all-time cost of its requests
    balance_usd: Decimal  # credits - spent
    entries: list[dict[str, Any]] = field(default_factory=list)  # newest first (credits_store._entry)

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "credits_usd": str(self.credits_usd), "spent_usd": str(self.spent_usd),
                "balance_usd": str(self.balance_usd), "entries": self.entries}


async def _ask(ledger: Asker, request: dict[str, Any]) -> dict[str, Any]:
    answer = await ledger.ask(request)
    if "error" in answer:
        raise CreditRefused(str(answer.get("error_code") or "ledger_error"), str(answer["error"]),
                            int(answer.get("status") or 503))
    return answer


def _checked(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except CreditError as exc:
        raise CreditRefused(exc.code, exc.message, exc.status) from None


async def key_balance(ledger: Asker, key_id: str, history: int = 50) -> KeyBalance:
    """A key's credits, spend and balance (exact SQL sums), and its newest `history` entries."""
    _checked(check_key_id, key_id)
    total = await _ask(ledger, {"op": "credit_total", "key_id": key_id})
    listed = await _ask(ledger, {"op": "credit_list", "key_id": key_id, "limit": history}) if history else {}
    return KeyBalance(key_id, Decimal(total["credits"]), Decimal(total["spent"]), Decimal(total["balance"]),
                      list(listed.get("entries", [])))


async def add_credit(ledger: Asker, key_id: str, usd: object, *, kind: str = "topup", note: str | None = None,
                     reference: str | None = None, actor: str | None = None,
                     revision: str | None = None) -> dict[str, Any]:
    """Book a top-up (or adjust/refund); the answer: {"entry", "duplicate", "credits", "spent",
    "balance", "seq"}, once the entry is checkpointed in the ledger file."""
    _checked(check_key_id, key_id)
    amount = _checked(parse_usd, usd, allow_negative=kind == "adjust", what="usd")
    return await _ask(ledger, {"op": "credit_add", "key_id": key_id, "usd": str(amount), "kind": kind,
                               "note": note, "reference": reference, "actor": actor, "revision": revision})


async def redeem_code(ledger: Asker, code: str, *, key_id: str, group: str | None, actor: str | None = None,
                      revision: str | None = None) -> dict[str, Any]:
    """Credit a redemption code to `key_id`; a typo is refused here, without asking the ledger."""
    try:
        digest = code_hash(code)
    except BadCode as exc:
        raise CreditRefused("invalid_code", str(exc), 400) from None
    return await _ask(ledger, {"op": "redeem", "code_hash": digest, "key_id": key_id, "group": group,
                               "actor": actor, "revision": revision})


def ledger_of(recorder: object) -> Asker | None:
    """The worker's recorder when it is the usage ledger (it has `ask`); None without a ledger."""
    return cast("Asker", recorder) if callable(getattr(recorder, "ask", None)) else None


def credit_book(limiter: object) -> CreditBook | None:
    """The enforcing limiter's book of prepaid credits (billing/limiter.py); None without limits."""
    book = getattr(limiter, "credits", None)
    return book if isinstance(book, CreditBook) else None


async def redeem_for_key(ledger: Asker | None, book: CreditBook | None, code: str, *, key_id: str,
                         group: str | None, revision: str | None = None) -> dict[str, Any]:
    """A client key redeems `code` onto itself: one attempt counted against the key's rate
    (billing/credits.py `redeem_attempt`, shared by every worker; a typo counts too), the owner's
    redemption, then the key's new credits total into the limiter's store so its next request can
    spend it. The owner's answer (`entry`, `credits`, `spent`, `balance`, ...); every refusal is a
    `CreditRefused` (`too_many_redemptions` 429 with `retry_after_s`, `limits_unavailable` and
    `ledger_unavailable` 503, and the code's own: invalid, not found, used, expired, wrong group)."""
    if book is not None:
        try:
            retry_ms = await redeem_attempt(book.store, key_id)
        except StateUnavailable as exc:
            raise CreditRefused("limits_unavailable", f"cannot count redemption attempts ({exc}); try again "
                                "shortly", 503) from None
        if retry_ms is not None:
            raise CreditRefused("too_many_redemptions", f"too many redemption attempts for key {key_id}; try "
                                f"again in {max(1, retry_ms // 1000)} s", 429, max(1, -(-retry_ms // 1000)))
    if ledger is None:
        raise CreditRefused("ledger_unavailable", "the usage ledger is not enabled on this gateway", 503)
    try:
        answer = await redeem_code(ledger, code, key_id=key_id, group=group, actor=key_id, revision=revision)
    except LedgerUnavailable as exc:
        raise CreditRefused("ledger_unavailable", f"usage ledger unavailable: {exc}", 503) from None
    if book is not None:
        await book.apply(str(answer["key_id"]), Decimal(answer["credits"]), int(answer["seq"]))
    return answer


class LedgerCredits:
    """billing.credits.CreditSource over the ledger."""

    def __init__(self, ledger: Asker) -> None:
        self.ledger = ledger

    async def credit_total(self, key_id: str) -> tuple[Decimal, int]:
        answer = await _ask(self.ledger, {"op": "credit_total", "key_id": key_id})
        return Decimal(answer["credits"]), int(answer["seq"])

    async def credit_changes(self, after: int) -> tuple[list[tuple[str, Decimal, int]], int]:
        answer = await _ask(self.ledger, {"op": "credit_changes", "after": after})
        return [(str(k), Decimal(t), int(s)) for k, t, s in answer["changes"]], int(answer["seq"])
