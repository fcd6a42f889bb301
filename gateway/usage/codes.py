"""Redemption codes: `TG-XXXX-XXXX-XXXX-XXXX-CC`, 80 random bits in base32 (A-Z, 2-7: no 0/O
or 1/I to confuse) and two check characters, so a mistyped code is refused without a ledger
lookup (a random typo passes the check once in 1,024). Only a code's SHA-256 is stored: the
ledger cannot give codes away, and 80 bits need no salt (there is nothing to guess from)."""

from __future__ import annotations

import base64
import hashlib
import secrets

PREFIX = "TG"
_BODY_BYTES = 10  # 80 bits -> 16 base32 characters
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


class BadCode(ValueError):
    """Not a code this gateway issues (malformed, or its check characters do not match)."""


def _check(body: str) -> str:
    return base64.b32encode(hashlib.sha256(f"{PREFIX}{body}".encode()).digest())[:2].decode()


def new_code() -> str:
    body = base64.b32encode(secrets.token_bytes(_BODY_BYTES)).decode()
    groups = "-".join(body[i : i + 4] for i in range(0, len(body), 4))
    return f"{PREFIX}-{groups}-{_check(body)}"


def normalise(code: str) -> str:
    """The code's 16 body characters: case, spaces and dashes do not matter. Raises BadCode."""
    text = "".join(code.split()).replace("-", "").upper()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    if len(text) != 18 or not set(text) <= _ALPHABET:
        raise BadCode("not a redemption code (expected TG-XXXX-XXXX-XXXX-XXXX-XX)")
    body, check = text[:16], text[16:]
    if not secrets.compare_digest(_check(body), check):
        raise BadCode("this redemption code has a typo: its check characters do not match")
    return body


def code_hash(code: str) -> str:
    """What the ledger stores and looks up. Raises BadCode."""
    return hashlib.sha256(normalise(code).encode()).hexdigest()
