"""Console sessions: a key is exchanged once for a signed, expiring cookie.

The cookie holds who signed in (an admin key's id or a client key's id), when it expires and a
random CSRF nonce, signed with HMAC-SHA256 under a secret generated into the data directory on
first start (`console.secret`, mode 0600, shared by every worker). It never holds the key. A
tampered, expired or unparseable cookie is simply no session (back to sign-in)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

SECRET_FILE = "console.secret"
COOKIE = "tg_console"
PRE_COOKIE = "tg_console_pre"  # the sign-in form's CSRF nonce, before any session exists
Role = Literal["admin", "key"]


class _Payload(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    role: Role
    subject: str
    expires: int
    csrf: str


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    subject: str  # admin key id or client key id
    expires: int  # epoch seconds
    csrf: str  # forms of this session carry it


def load_secret(data_dir: Path) -> bytes:
    """The signing secret, created on first use. Several workers may race to create it: each
    writes its own temporary file and links it into place; the first link wins, all read it."""
    path = data_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable console secret (delete it to make a new one)")
    return secret


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, body: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + body, hashlib.sha256).digest()

    def sign(self, purpose: str, body: bytes) -> str:
        return f"{_b64(body)}.{_b64(self._mac(purpose, body))}"

    def verify(self, purpose: str, token: str) -> bytes | None:
        body_text, _, mac_text = token.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        return body if hmac.compare_digest(mac, self._mac(purpose, body)) else None

    def issue(self, role: Role, subject: str, lifetime_s: float) -> tuple[Session, str]:
        session = Session(role, subject, int(time.time() + lifetime_s), secrets.token_urlsafe(18))
        payload = _Payload(session.role, session.subject, session.expires, session.csrf)
        return session, self.sign("session", msgspec.json.encode(payload))

    def session(self, token: str | None) -> Session | None:
        body = self.verify("session", token) if token else None
        if body is None:
            return None
        try:
            p = msgspec.json.decode(body, type=_Payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if p.expires <= time.time():
            return None
        return Session(p.role, p.subject, p.expires, p.csrf)

    def pre_token(self) -> tuple[str, str]:
        """(nonce for the sign-in form, cookie value carrying it)."""
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time()) + 3600
        return nonce, self.sign("pre", f"{expires}:{nonce}".encode())

    def pre_nonce(self, cookie: str | None) -> str | None:
        body = self.verify("pre", cookie) if cookie else None
        if body is None:
            return None
        expires, _, nonce = body.decode(errors="replace").partition(":")
        return nonce if expires.isdigit() and int(expires) > time.time() and nonce else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 4096:
        raise ValueError("bad token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("bad token") from None


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
