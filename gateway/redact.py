"""One redaction of every configured secret, for every byte that leaves the gateway from an
upstream error or a config value (client responses, stream events, logs, admin endpoints).

The secrets are every provider API key and every provider header value that is a credential
(read from the environment, or named like one); bundle problems also mask every value a `${VAR}`
resolved to. The compiler collects them and the snapshot carries the result.
Longest first, so that a key containing another key is replaced whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

MASK = "[redacted]"
_MIN_LEN = 4  # shorter values ("1", "v1") are not secrets, and masking them would garble text


class Redactor:
    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = sorted({s for s in secrets if len(s) >= _MIN_LEN}, key=len, reverse=True)
        self._text = tuple(unique)
        self._bytes = tuple(s.encode() for s in unique)

    def __bool__(self) -> bool:
        return bool(self._text)

    def text(self, text: str) -> str:
        for secret in self._text:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in self._bytes:
            if secret in data:
                data = data.replace(secret, MASK.encode())
        return data


NOTHING = Redactor()


def mask_key(key: str) -> str:
    """A key as operators may see it: its first and last characters only (`sk-...a1b2`); short
    keys show less, so that a key is never more than half shown."""
    if not key:
        return "(none)"
    if len(key) < 12:
        return "..." + key[-2:] if len(key) >= 8 else "..."
    prefix = key[:3] if key[2] in "-_" else key[:2]
    return f"{prefix}...{key[-4:]}"


_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "cookie", "signature", "password")


def is_secret_header(name: str, template: str) -> bool:
    """A provider header whose value is a credential: one read from the environment (secrets
    never live in the bundle's files) or one named like a credential. Literal values such as
    `anthropic-version` stay readable (masking them would garble relayed text)."""
    lowered = name.lower()
    return "${" in template or any(word in lowered for word in _CREDENTIAL_WORDS)


class LogRedaction(logging.Filter):
    """Masks the live snapshot's secrets in every record a handler writes (upstream messages
    and config values end up in log lines through many paths; this is the one exit)."""

    def __init__(self, current: Callable[[], Redactor]) -> None:
        super().__init__()
        self._current = current

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._current()
        if redactor:
            message = record.getMessage()
            masked = redactor.text(message)
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redactor.text(record.exc_text)
            if masked != message:
                record.msg, record.args = masked, None
        return True


def redact_logs(current: Callable[[], Redactor]) -> None:
    """Install the redaction on every handler of the root logger (once per handler)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogRedaction) for f in handler.filters):
            handler.addFilter(LogRedaction(current))
