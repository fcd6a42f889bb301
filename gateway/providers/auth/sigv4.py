"""AWS Signature Version 4 for Bedrock, by botocore's signer (`SigV4Auth` over an
`AWSRequest`): the signature covers the method, the path, the signed headers and a hash of the
final body bytes, so it is computed last, on exactly what the transport sends.

Credentials: the bundle's keys (config/cloud.py resolved them), else the standard AWS chain
(environment, profile, shared files, SSO, container and instance roles), resolved once per
provider in a thread (the chain may read files or call a metadata endpoint) and kept; botocore's
refreshable credentials (roles, SSO) are refreshed in a thread too when they near expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .base import CredentialsUnavailable

SERVICE = "bedrock"


class AwsSigner:
    def __init__(self, provider_id: str, region: str, credentials: Mapping[str, str]) -> None:
        self.provider_id, self.region = provider_id, region
        self._given = dict(credentials)
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """The headers to send: `headers` plus x-amz-date, x-amz-security-token, authorization."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = await self._frozen()
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    async def _frozen(self) -> Any:
        creds = self._credentials
        if creds is None:
            async with self._lock:
                if self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._resolve)
                creds = self._credentials
        refresh_needed = getattr(creds, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():  # roles, SSO: may call AWS
            try:
                return await asyncio.to_thread(creds.get_frozen_credentials)
            except Exception as exc:  # botocore raises many kinds; the reason is what matters
                raise CredentialsUnavailable(
                    f"refreshing the AWS credentials failed ({type(exc).__name__}: {exc})") from None
        return creds.get_frozen_credentials()

    def _resolve(self) -> Any:
        # in this thread, also what the event loop imports later (signer, event-stream decoder):
        # botocore takes ~0.5 s to import, which would stall every request of the worker
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.eventstream
        import botocore.session

        given = self._given
        if given.get("access_key_id"):
            key, secret = given["access_key_id"], given.get("secret_access_key", "")
            return botocore.credentials.Credentials(key, secret, given.get("session_token") or None)
        session = botocore.session.Session(profile=given.get("profile") or None)
        try:
            found = session.get_credentials()
        except Exception as exc:  # a broken profile, an unreachable SSO...
            reason = f"{type(exc).__name__}: {exc}"
            raise CredentialsUnavailable(f"the AWS credential chain failed ({reason})") from None
        if found is None:
            raise CredentialsUnavailable(
                "no AWS credentials found (bundle keys, environment, profile, or instance role)")
        return found


_SIGNERS: dict[tuple[str, str, tuple[tuple[str, str], ...]], AwsSigner] = {}


def signer_for(provider_id: str, region: str, credentials: Mapping[str, str]) -> AwsSigner:
    """One signer per provider and credentials in this worker (a reload with new keys: a new one)."""
    key = (provider_id, region, tuple(sorted(credentials.items())))
    signer = _SIGNERS.get(key)
    if signer is None:
        for old in [k for k in _SIGNERS if k[0] == provider_id]:
            del _SIGNERS[old]
        signer = _SIGNERS[key] = AwsSigner(provider_id, region, credentials)
    return signer
