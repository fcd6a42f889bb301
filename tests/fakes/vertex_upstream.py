"""A fake Google Vertex AI on loopback, with its own OAuth token endpoint.

- `POST /token`: the service-account JWT grant (google-auth's `jwt-bearer` assertion). The
  assertion's RS256 signature is verified with google-auth against the service account's public
  key, its audience must be Google's token endpoint and its scope cloud-platform; the answer is a fresh
  access token valid `token_lifetime` seconds. `POST /token-fail` refuses every grant.
- `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
  (`:streamGenerateContent?alt=sse`): answered by the fake Gemini's logic (tests/fakes/gemini_upstream.py).
- `.../publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict`): the body must carry
  `anthropic_version: "vertex-2023-10-16"` and no `model`; answered by the fake Anthropic's logic.

Every model call needs `Authorization: Bearer <a token this endpoint issued and that has not
expired>`, else 401 UNAUTHENTICATED; `received` records each call with the token it used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.threaded import ThreadedApp, wait_for

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's audience, wherever token_uri points


@dataclass
class Call:
    path: str
    query: str
    token: str
    body: dict[str, Any]


class _Shim:
    """The request as the fake Gemini / Anthropic logic expects it (their own path and headers)."""

    def __init__(self, request: web.Request, path: str, headers: dict[str, str]) -> None:
        self._request, self.path, self.headers = request, path, headers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def service_account(token_uri: str, email: str = "tollgate@proj-1.iam.gserviceaccount.com") -> tuple[str, str]:
    """(a service account JSON key with a fresh RSA key, the PEM of its public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    info = {"type": "service_account", "project_id": "proj-1", "private_key_id": "k1", "private_key": private,
            "client_email": email, "client_id": "1", "token_uri": token_uri}
    return json.dumps(info), public


class FakeVertex:
    def __init__(self, project: str, location: str, token_lifetime: int = 3600) -> None:
        self.project, self.location, self.token_lifetime = project, location, token_lifetime
        self.public_keys: dict[str, str] = {}  # client_email -> public key PEM
        self.tokens: dict[str, float] = {}  # issued token -> monotonic expiry
        self.grants: list[str] = []  # client_email of each token issued
        self.received: list[Call] = []
        self.unauthenticated = 0
        self._gemini, self._anthropic = FakeGemini(""), FakeAnthropic("")
        self.port = 0
        self._server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def account(self, email: str, *, failing: bool = False) -> str:
        """A new service account JSON whose public key this fake trusts (token_uri: this fake)."""
        info, public = service_account(f"{self.base_url}/token{'-fail' if failing else ''}", email)
        self.public_keys[email] = public
        return info

    def start(self) -> FakeVertex:
        self._server = ThreadedApp(self._handle)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        return wait_for(predicate, timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path in ("/token", "/token-fail"):
            return self._token(request.path, body)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0.0) <= time.monotonic():
            self.unauthenticated += 1
            return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED", "message":
                                                "Request had invalid authentication credentials."}}, status=401)
        doc = json.loads(body) if body else {}
        self.received.append(Call(request.path, request.query_string, token, doc))
        prefix = f"/v1/projects/{self.project}/locations/{self.location}/publishers/"
        publisher, _, rest = request.path.removeprefix(prefix).partition("/models/")
        model, _, verb = rest.rpartition(":")
        if not request.path.startswith(prefix) or not model:
            return web.json_response({"error": {"code": 404, "status": "NOT_FOUND", "message": "bad path"}}, status=404)
        if publisher == "google" and verb in ("generateContent", "streamGenerateContent"):
            shim = _Shim(request, f"/v1beta/models/{model}:{verb}", dict(request.headers))
            return await self._gemini.answer(shim, doc)  # type: ignore[arg-type]
        if publisher == "anthropic" and verb in ("rawPredict", "streamRawPredict"):
            if doc.get("anthropic_version") != "vertex-2023-10-16" or "model" in doc:
                return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                    "anthropic_version vertex-2023-10-16 required, no model"}},
                                         status=400)
            if (verb == "streamRawPredict") != bool(doc.get("stream")):
                return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                    "stream must match the verb"}}, status=400)
            shim = _Shim(request, "/v1/messages", {"anthropic-version": "2023-06-01"})
            return await self._anthropic.answer(shim, {**doc, "model": model})  # type: ignore[arg-type]
        return web.json_response({"error": {"code": 404, "status": "NOT_FOUND", "message": "no such verb"}},
                                 status=404)

    def _token(self, path: str, body: bytes) -> web.Response:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if path == "/token-fail":
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                                     status=400)
        if form.get("grant_type") != JWT_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        unverified = jwt.decode(form["assertion"], verify=False)
        public = self.public_keys.get(str(unverified.get("iss")))
        try:
            claims = jwt.decode(form["assertion"], certs=public, audience=AUDIENCE)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if SCOPE not in str(claims.get("scope", "")).split():
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.fake-{len(self.grants) + 1}"
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.grants.append(str(claims["iss"]))
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})
