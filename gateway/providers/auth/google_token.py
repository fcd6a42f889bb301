"""OAuth access tokens for Vertex AI from a service account's JSON key, by google-auth
(`service_account.Credentials`, scope cloud-platform; the JWT grant goes to the key's
`token_uri`). The first request of a provider waits for the first token; from then on a
background task refreshes it before it expires (at half its lifetime, at most 5 minutes before
the end), so requests read the cached token and never wait for the token endpoint.

A refresh that fails is retried with backoff; while the current token is still valid nothing
changes. Once it has expired, requests fail with `CredentialsUnavailable` naming the refresh's
error: the relay fails the attempt and the provider's breaker benches it until a refresh works."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from .base import CredentialsUnavailable

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
MAX_EARLY_S = 300.0  # refresh at most this long before the token's expiry
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
log = logging.getLogger("tollgate")


class GoogleTokenSource:
    def __init__(self, provider_id: str, service_account_json: str) -> None:
        self.provider_id = provider_id
        self._info: dict[str, Any] = msgspec.json.decode(service_account_json)
        self._credentials: Any = None
        self._token = ""
        self._expires = 0.0  # time.monotonic() of the token's expiry
        self._failure = ""  # the last refresh's error, while it keeps failing
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Lock | None = None

    async def token(self) -> str:
        if self._token and time.monotonic() < self._expires:
            return self._token
        if self._task is None or self._task.done():
            await self._start()
        if self._token and time.monotonic() < self._expires:
            return self._token
        raise CredentialsUnavailable(f"no valid Google OAuth token for provider {self.provider_id}: "
                                     f"{self._failure or 'the token expired'}")

    async def _start(self) -> None:
        self._first = self._first or asyncio.Lock()
        async with self._first:
            if self._task is not None and not self._task.done():
                return
            try:
                await self._refresh()
            except CredentialsUnavailable:
                return  # token() reports it; the next request tries again
            self._task = asyncio.get_running_loop().create_task(self._keep_fresh())

    async def _refresh(self) -> None:
        try:
            token, lifetime = await asyncio.to_thread(self._fetch)
        except Exception as exc:  # google-auth's RefreshError, a network error...: the reason matters
            self._failure = f"refreshing the token failed ({type(exc).__name__}: {str(exc)[:300]})"
            raise CredentialsUnavailable(self._failure) from None
        self._token, self._expires, self._failure = token, time.monotonic() + lifetime, ""

    def _fetch(self) -> tuple[str, float]:
        """(token, seconds it is valid) from the token endpoint; runs in a thread."""
        import google.auth.transport.requests
        from google.oauth2 import service_account

        if self._credentials is None:
            self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                self._info, scopes=list(SCOPES))
        creds = self._credentials
        creds.refresh(google.auth.transport.requests.Request())
        expiry = creds.expiry  # naive UTC
        lifetime = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() if expiry else 3600.0
        return str(creds.token), max(lifetime, 1.0)

    async def _keep_fresh(self) -> None:
        failures = 0
        while True:
            left = self._expires - time.monotonic()
            early = min(MAX_EARLY_S, left / 2)
            wait = left - early if not failures else RETRY_S[min(failures, len(RETRY_S)) - 1]
            await asyncio.sleep(max(wait, 0.05))
            try:
                await self._refresh()
                failures = 0
            except CredentialsUnavailable as exc:
                failures += 1
                log.warning("vertex provider %s: %s", self.provider_id, exc)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


_SOURCES: dict[str, tuple[str, GoogleTokenSource]] = {}


def token_source(provider_id: str, service_account_json: str) -> GoogleTokenSource:
    """One source per provider in this worker; new credentials (a reload) replace the old one."""
    found = _SOURCES.get(provider_id)
    if found is not None and found[0] == service_account_json:  # the same str object: an identity check
        return found[1]
    if found is not None:
        with contextlib.suppress(RuntimeError):
            found[1].close()
    source = GoogleTokenSource(provider_id, service_account_json)
    _SOURCES[provider_id] = (service_account_json, source)
    return source
