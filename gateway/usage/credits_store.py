"""Credit entries and redemption codes in DuckDB, on the ledger owner's writer connection only
(owner.py serialises every request on its one DuckDB thread, so a check and its insert cannot
interleave with another request's). Every write is committed and checkpointed before it
returns: the API answers only once the entry is in the database file.

Requests of the owner's socket protocol (see owner.py):
  {"op": "credit_add", "key_id", "usd", "kind", "reference"?, "note"?, "actor"?, "revision"?}
  {"op": "credit_list", "key_id"?, "limit"?}
  {"op": "credit_total", "key_id"}      -> {"credits", "spent", "balance", "seq"}
  {"op": "credit_changes", "after"}     -> {"changes": [[key_id, credits, seq]], "seq"}
  {"op": "codes_add", "hashes", "usd", "batch", "group"?, "expires"?, "note"?, "actor"?}
  {"op": "redeem", "code_hash", "key_id", "group"?, "actor"?, "revision"?}
Refusals answer {"error", "error_code", "status"} (credits.md lists the codes).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # workers import the checks below (credits_client.py) and must not load DuckDB
    import duckdb

OPS = frozenset({"credit_add", "credit_list", "credit_total", "credit_changes", "codes_add", "redeem"})
KINDS = ("topup", "redeem", "adjust", "refund")
MAX_USD = Decimal(1_000_000)  # one entry; a typo of a few zeros is refused, not booked
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ENTRY = "id, key_id, amount_usd, kind, reference, note, actor, created_at, policy_revision"


class CreditError(Exception):
    """A refused credit request: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def parse_usd(value: object, *, allow_negative: bool = False, what: str = "amount") -> Decimal:
    """A USD amount from a JSON number or string: finite, at most 9 decimals, non-zero,
    positive unless `allow_negative`, at most MAX_USD in size."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise CreditError("invalid_amount", f"{what} must be a number of USD, e.g. 10 or \"12.50\"")
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise CreditError("invalid_amount", f"{what} {str(value)[:40]!r} is not a number of USD") from None
    if not usd.is_finite():
        raise CreditError("invalid_amount", f"{what} must be a finite number of USD")
    if usd == 0 or (usd < 0 and not allow_negative):
        raise CreditError("invalid_amount", f"{what} must be {'non-zero' if allow_negative else 'positive'}, "
                          f"not {usd}")
    if abs(usd) > MAX_USD:
        raise CreditError("invalid_amount", f"{what} {usd} is above the limit of {MAX_USD} USD per entry")
    if usd != usd.quantize(Decimal("1e-9")):
        raise CreditError("invalid_amount", f"{what} {usd} has more than 9 decimals")
    return usd


def check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise CreditError("invalid_key", f"not a key id: {str(key_id)[:80]!r}")
    return key_id


def _text(request: dict[str, Any], name: str, limit: int = 500) -> str | None:
    value = request.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise CreditError(f"invalid_{name}", f"{name} must be text of at most {limit} characters")
    return value


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    ident, key_id, amount, kind, reference, note, actor, created_at, revision = row
    return {"id": int(ident), "key_id": key_id, "amount_usd": f"{amount:f}", "kind": kind,
            "reference": reference, "note": note, "actor": actor,
            "created_at": created_at.isoformat(), "policy_revision": revision}


def totals(con: duckdb.DuckDBPyConnection, key_id: str) -> dict[str, Any]:
    """A key's credits, all-time spend (retained daily totals included) and balance, as decimal
    strings; `seq` is its latest entry's id (0: none), which only grows."""
    row = con.execute(
        """SELECT (SELECT coalesce(sum(amount_usd), 0) FROM credits WHERE key_id = $k),
                  (SELECT coalesce(max(id), 0) FROM credits WHERE key_id = $k),
                  (SELECT coalesce(sum(cost_usd), 0) FROM usage WHERE key_id = $k)
                + (SELECT coalesce(sum(cost_usd), 0) FROM usage_daily WHERE key_id = $k)""",
        {"k": key_id},
    ).fetchone()
    assert row is not None  # scalar subqueries: always one row
    credits, seq, spent = Decimal(row[0]), int(row[1]), Decimal(row[2])
    return {"key_id": key_id, "credits": f"{credits:f}", "spent": f"{spent:f}",
            "balance": f"{credits - spent:f}", "seq": seq}


def changes(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    """The credit totals of the keys with an entry newer than `after` (the limiters' sweep)."""
    after = request.get("after")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise CreditError("invalid_after", "after must be an entry id (an integer >= 0)")
    rows = con.execute(
        """SELECT key_id, sum(amount_usd), max(id) FROM credits
           WHERE key_id IN (SELECT DISTINCT key_id FROM credits WHERE id > ?) GROUP BY key_id""",
        [after],
    ).fetchall()
    newest = con.execute("SELECT coalesce(max(id), 0) FROM credits").fetchone()
    assert newest is not None
    return {"changes": [[k, f"{Decimal(t):f}", int(s)] for k, t, s in rows], "seq": int(newest[0])}


def _by_reference(con: duckdb.DuckDBPyConnection, reference: str) -> dict[str, Any] | None:
    row = con.execute(f"SELECT {_ENTRY} FROM credits WHERE reference = ?", [reference]).fetchone()
    return _entry(row) if row else None


def _insert(con: duckdb.DuckDBPyConnection, values: list[Any]) -> dict[str, Any]:
    """One entry, committed and checkpointed (in the database file, not only its WAL)."""
    con.execute("BEGIN")
    try:
        row = con.execute(
            "INSERT INTO credits (key_id, amount_usd, kind, reference, note, actor, created_at, "
            f"policy_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_ENTRY}",
            values,
        ).fetchone()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")
    assert row is not None
    return _entry(row)


def add_credit(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    """A top-up, adjustment or refund. With a `reference` already booked: the same entry again
    (`duplicate: true`) when it is the same movement, a `reference_conflict` otherwise."""
    key_id = check_key_id(request.get("key_id"))
    kind = request.get("kind") or "topup"
    if kind not in ("topup", "adjust", "refund"):
        raise CreditError("invalid_kind", f"kind must be topup, adjust or refund, not {str(kind)[:40]!r}")
    usd = parse_usd(request.get("usd"), allow_negative=kind == "adjust")
    reference = _text(request, "reference", 200)
    if reference is not None and reference.startswith("code:"):
        raise CreditError("invalid_reference", "references starting with code: are kept for redemption codes")
    if reference is not None:
        booked = _by_reference(con, reference)
        if booked is not None:
            if (booked["key_id"], Decimal(booked["amount_usd"]), booked["kind"]) != (key_id, usd, kind):
                raise CreditError("reference_conflict", f"reference {reference!r} is already used by entry "
                                  f"{booked['id']} ({booked['kind']} of {booked['amount_usd']} USD to key "
                                  f"{booked['key_id']}); use a new reference for a new movement", 409)
            return {"entry": booked, "duplicate": True, **totals(con, key_id)}
    entry = _insert(con, [key_id, usd, kind, reference, _text(request, "note"), _text(request, "actor", 200),
                          dt.datetime.now(dt.UTC), _text(request, "revision", 200)])
    return {"entry": entry, "duplicate": False, **totals(con, key_id)}


def list_credits(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    """The newest entries first, of one key or of all."""
    limit = request.get("limit") or 100
    if not isinstance(limit, int) or not 0 < limit <= 10_000:
        raise CreditError("invalid_limit", "limit must be 1..10000")
    key_id = request.get("key_id")
    where, params = ("WHERE key_id = ?", [check_key_id(key_id)]) if key_id is not None else ("", [])
    sql = f"SELECT {_ENTRY} FROM credits {where} ORDER BY id DESC LIMIT {limit}"
    rows = con.execute(sql, params).fetchall()
    return {"entries": [_entry(r) for r in rows]}


def add_codes(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    """Store a batch of code hashes, all or none."""
    hashes = request.get("hashes")
    if not isinstance(hashes, list) or not hashes or not all(isinstance(h, str) and _HASH.match(h)
                                                             for h in hashes):
        raise CreditError("invalid_codes", "hashes must be a non-empty list of SHA-256 hex digests")
    usd = parse_usd(request.get("usd"))
    expires = request.get("expires")
    expires_at = dt.datetime.fromisoformat(expires) if isinstance(expires, str) else None
    now = dt.datetime.now(dt.UTC)
    rows = [(h, usd, _text(request, "batch", 200) or "", _text(request, "group", 200), expires_at,
             _text(request, "note"), _text(request, "actor", 200), now) for h in hashes]
    con.execute("BEGIN")
    try:
        con.executemany("INSERT INTO redemption_codes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")
    return {"added": len(rows)}


def redeem(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    """Credit a code's amount to `key_id` once, ever: the entry's reference is `code:<hash>`
    (unique), checked and inserted on the owner's one DuckDB thread."""
    code_hash = request.get("code_hash")
    if not isinstance(code_hash, str) or not _HASH.match(code_hash):
        raise CreditError("invalid_code", "not a redemption code")
    key_id = check_key_id(request.get("key_id"))
    row = con.execute("SELECT amount_usd, group_id, expires_at, batch FROM redemption_codes "
                      "WHERE code_hash = ?", [code_hash]).fetchone()
    if row is None:
        raise CreditError("code_not_found", "this redemption code does not exist", 404)
    amount, group_id, expires_at, batch = row
    reference = f"code:{code_hash}"
    used = _by_reference(con, reference)
    if used is not None:
        by = "this key" if used["key_id"] == key_id else "another key"
        when = used["created_at"]
        raise CreditError("code_already_redeemed", f"this redemption code was already redeemed (by {by}, "
                          f"at {when})", 409)
    now = dt.datetime.now(dt.UTC)
    if expires_at is not None and expires_at <= now:
        raise CreditError("code_expired", f"this redemption code expired at {expires_at.isoformat()}", 410)
    if group_id is not None and group_id != request.get("group"):
        raise CreditError("code_wrong_group", f"this redemption code is for keys of group {group_id!r}", 403)
    entry = _insert(con, [key_id, amount, "redeem", reference, f"code of batch {batch}" if batch else None,
                          _text(request, "actor", 200), now, _text(request, "revision", 200)])
    return {"entry": entry, "duplicate": False, **totals(con, key_id)}


def dispatch(con: duckdb.DuckDBPyConnection, request: dict[str, Any]) -> dict[str, Any]:
    import duckdb  # loaded already: this runs on the ledger owner's connection

    op = request.get("op")
    try:
        if op == "credit_add":
            return add_credit(con, request)
        if op == "credit_list":
            return list_credits(con, request)
        if op == "credit_total":
            return totals(con, check_key_id(request.get("key_id")))
        if op == "credit_changes":
            return changes(con, request)
        if op == "codes_add":
            return add_codes(con, request)
        if op == "redeem":
            return redeem(con, request)
    except CreditError as exc:
        return {"error": exc.message, "error_code": exc.code, "status": exc.status}
    except duckdb.ConstraintException as exc:  # a second owner can't exist; kept as a clear refusal
        return {"error": f"refused by the ledger: {str(exc).splitlines()[0]}", "error_code": "conflict",
                "status": 409}
    except ValueError as exc:
        return {"error": f"bad credit request: {exc}", "error_code": "invalid_request", "status": 400}
    return {"error": f"unknown op {op!r}", "error_code": "invalid_request", "status": 400}
