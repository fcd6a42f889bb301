"""One alert to its webhook: the body (the event document, or Slack's `{"text": ...}`), the
HMAC-SHA256 signature of the exact body bytes (`sha256=<hex>` in `signature_header`), and the
attempts: each bounded by `timeout_s`, retried on a transport error, 408, 429 or 5xx with a
doubling backoff, given up after `attempts`. Every attempt goes to the alert log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..config.alerts import AlertRuntime
from ..config.types import Timeouts
from ..providers.transport.base import UpstreamClient, UpstreamConnectError, UpstreamTimeout
from ..redact import Redactor
from .events import Event, Placeholders
from .log import AlertLog

Sleep = Callable[[float], Awaitable[None]]
_RETRIED = frozenset({408, 425, 429})


def render(alert: AlertRuntime, event: Event) -> bytes:
    doc = event.document()
    text = alert.text.format_map(Placeholders(doc)) if alert.text else str(doc["summary"])
    if alert.format == "slack":
        return msgspec.json.encode({"text": text})
    return msgspec.json.encode({"alert": alert.id, **doc, "text": text})


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(alert: AlertRuntime, event: Event, body: bytes) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "tollgate-alerts",
               "x-tollgate-event": event.name, "x-tollgate-delivery": uuid.uuid4().hex}
    headers.update(alert.headers)
    if alert.secret:
        headers[alert.signature_header] = sign(alert.secret, body)
    return headers


async def deliver(
    alert: AlertRuntime, event: Event, client: UpstreamClient, log: AlertLog, redactor: Redactor,
    sleep: Sleep = asyncio.sleep,
) -> bool:
    """True once the webhook answered 2xx; False when every attempt failed (all logged)."""
    body = render(alert, event)
    headers = headers_for(alert, event, body)
    delay = alert.backoff_s
    for attempt in range(1, alert.attempts + 1):
        status, error = await _attempt(alert, client, headers, body)
        retry = error is not None and (status is None or status >= 500 or status in _RETRIED)
        last = attempt == alert.attempts or not retry
        outcome = "delivered" if error is None else "failed" if last else "retrying"
        log.write(redactor, alert=alert.id, event=event.name, subject=event.subject, attempt=attempt,
                  attempts=alert.attempts, status=status, error=error, outcome=outcome,
                  delivery=headers["x-tollgate-delivery"])
        if error is None:
            return True
        if last:
            return False
        await sleep(delay)
        delay *= 2
    return False


async def _attempt(
    alert: AlertRuntime, client: UpstreamClient, headers: dict[str, str], body: bytes
) -> tuple[int | None, str | None]:
    t = alert.timeout_s
    try:
        async with asyncio.timeout(t):
            timeouts = Timeouts(connect=t, read=t, total=t)
            response = await client.send("POST", alert.url, dict(headers), body, timeouts)
            try:
                await response.read()
            finally:
                await response.aclose()
    except (UpstreamTimeout, TimeoutError):
        return None, f"timed out after {t:g}s"
    except (UpstreamConnectError, OSError) as exc:
        return None, f"connection failed ({exc})"
    except Exception as exc:  # any client's surprise: a failed attempt, never a dead dispatcher
        return None, f"failed ({type(exc).__name__}: {exc})"
    if 200 <= response.status < 300:
        return response.status, None
    return response.status, f"HTTP {response.status}"


def describe(result: dict[str, Any]) -> str:
    return f"attempt {result['attempt']}/{result['attempts']}: {result['outcome']}" + (
        f" ({result['error']})" if result.get("error") else "")
