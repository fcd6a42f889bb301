"""The route table: every path the gateway serves, as an `Endpoint` of the one envelope
(envelope.py) that declares its handler, its error family and whether it is recorded.

Exact paths are looked up by (method, path); paths that carry a model or a task id (Gemini's
`/v1beta/models/{model}:{verb}`, `/v1/models/{id}`, `/mj/task/{id}/fetch`) are matched after.
(docs/architecture.md, "The request path", step 2)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GatewayError, MethodNotAllowed, NotFound
from . import admin, count_tokens, credits, native, provider_admin
from .envelope import Call, Endpoint
from .http import family_of
from .midjourney import endpoints as midjourney
from .realtime import endpoint as realtime
from .relay import relay_endpoint
from .suno import endpoints as suno
from .videos import endpoints as videos

if TYPE_CHECKING:
    from ..console.handler import Console

RELAYED = (
    "chat/completions",
    "completions",
    "embeddings",
    "images/generations",
    "images/edits",
    "audio/speech",
    "audio/transcriptions",
    "audio/translations",
    "moderations",
    "rerank",
    "responses",
)

EXACT: dict[tuple[str, str], Endpoint] = {("POST", f"/v1/{e}"): relay_endpoint(e) for e in RELAYED}
EXACT.update({
    ("POST", "/v1/messages"): relay_endpoint("messages", native.prepare_anthropic, "anthropic"),
    ("POST", "/v1/messages/count_tokens"): count_tokens.anthropic_count_tokens,  # free: not billed
    ("GET", "/v1/models"): Endpoint(admin.list_models),
    ("GET", "/v1/realtime"): Endpoint(realtime.http_get),  # without an upgrade: a 426 that says how
    ("POST", "/v1/realtime/client_secrets"): realtime.CLIENT_SECRETS,
    ("GET", "/healthz"): Endpoint(admin.healthz),
    ("GET", "/readyz"): Endpoint(admin.readyz),
    ("GET", "/metrics"): Endpoint(admin.metrics),
    ("GET", "/admin/policy"): Endpoint(admin.policy_status),
    ("GET", "/admin/providers"): Endpoint(provider_admin.list_providers),
    ("POST", "/admin/usage/query"): Endpoint(admin.usage_query),
    ("POST", "/admin/credits"): Endpoint(credits.top_up),
    ("POST", "/v1/dashboard/redeem"): Endpoint(credits.redeem),
})
EXACT.update({("POST", path): e for path, e in midjourney.POST_ROUTES.items()})
EXACT.update({("POST", "/v1/videos"): videos.CREATE, ("GET", "/v1/videos"): videos.LIST})
EXACT.update({("POST", path): e for path, e in suno.POST_ROUTES.items()})
GEMINI = native.GeminiRoutes(
    relay_endpoint("generateContent", native.prepare_gemini, "gemini"),
    count_tokens.gemini_count_tokens,
    {v: relay_endpoint(v, native.prepare_gemini, "gemini") for v in native.EMBED_VERBS},
)
RETRIEVE_MODEL = Endpoint(admin.retrieve_model)
_console_pages: Console | None = None  # the web console (gateway/console/), made by its first request


async def _console(call: Call) -> None:
    global _console_pages
    if _console_pages is None:  # imported on first use: a worker nobody opens it on never loads it
        from ..console.handler import Console

        _console_pages = Console()
    await _console_pages.handle(call.state, call.snap, call.scope, call.proto)


CONSOLE_ENDPOINT = Endpoint(_console)
CREDIT_BALANCE = Endpoint(credits.balance)


def find(method: str, path: str) -> Endpoint:
    """The endpoint for a request; an unknown path or method is an endpoint that answers 404/405."""
    endpoint = EXACT.get((method, path)) or GEMINI.route(method, path)
    if endpoint is not None:
        return endpoint
    if method == "GET" and path.startswith("/v1/models/"):
        return RETRIEVE_MODEL
    if path == "/console" or path.startswith("/console/"):
        return CONSOLE_ENDPOINT
    if method == "GET" and path.startswith(credits.PREFIX):
        return CREDIT_BALANCE
    found = provider_admin.route(method, path) or midjourney.dynamic_route(method, path)
    found = found or videos.dynamic_route(method, path) or suno.dynamic_route(method, path)
    return found or Endpoint(_no_route, family_of(path))


async def _no_route(call: Call) -> None:
    raise no_route(call.scope.method, call.scope.path)


def no_route(method: str, path: str) -> GatewayError:
    if method != "POST" and (("POST", path) in EXACT or GEMINI.route("POST", path) is not None):
        return MethodNotAllowed(f"{method} is not allowed on {path}: use POST", headers=(("allow", "POST"),))
    return NotFound(f"unknown path {method} {path}", code="unknown_url")
