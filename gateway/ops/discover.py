"""The models an upstream offers, by its own listing API: OpenAI and OpenAI-compatible
`GET {base_url}/models`, Anthropic `GET /v1/models` (paged by `after_id`), Gemini `models.list`
`GET /v1beta/models` (paged by `pageToken`), Azure `GET /openai/deployments` (its deployments,
mapped back to model names through `deployments`), the mock: what it lists. Sent with the
provider's first API key through the same transport and provider headers as the relay."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from ..config.snapshot import ProviderRuntime
from ..config.types import AnthropicProvider, AzureProvider
from ..providers.adapters.base import UpstreamCall, send_http
from ..providers.transport.base import UpstreamClient
from ..redact import Redactor
from .errors import error_detail

MAX_PAGES = 20
AZURE_LIST_VERSION = "2022-12-01"  # the last api-version that lists deployments


class DiscoveryError(Exception):
    """The upstream's list could not be had (the message is safe to print)."""


class _Page(msgspec.Struct):
    data: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    has_more: bool = False
    last_id: str | None = None
    nextPageToken: str | None = None


async def upstream_models(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, key_index: int = 0
) -> list[str]:
    kind = provider.kind
    if kind == "mock":
        return sorted(provider.models)
    key = provider.api_keys[key_index] if key_index < len(provider.api_keys) else ""
    if kind in ("openai", "openai-compatible"):
        auth = {"authorization": f"Bearer {key}"} if key else {}
        page = await _get(provider, client, redactor, f"{provider.base_url}/models", auth)
        return sorted({str(m["id"]) for m in page.data if "id" in m})
    if kind == "anthropic":
        return await _anthropic(provider, client, redactor, key)
    if kind == "gemini":
        return await _gemini(provider, client, redactor, key)
    if kind == "azure":
        return await _azure(provider, client, redactor, key)
    raise DiscoveryError(f"{kind} providers have no model list to fetch")


async def _anthropic(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, key: str
) -> list[str]:
    spec = provider.spec
    version = spec.anthropic_version if isinstance(spec, AnthropicProvider) else "2023-06-01"
    root = provider.base_url.rstrip("/").removesuffix("/v1")
    auth = {"x-api-key": key, "anthropic-version": version}
    found: set[str] = set()
    after = ""
    for _ in range(MAX_PAGES):
        query = "?limit=1000" + (f"&after_id={quote(after)}" if after else "")
        page = await _get(provider, client, redactor, f"{root}/v1/models{query}", auth)
        found.update(str(m["id"]) for m in page.data if "id" in m)
        if not page.has_more or not page.last_id:
            break
        after = page.last_id
    return sorted(found)


async def _gemini(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, key: str
) -> list[str]:
    root = provider.base_url.rstrip("/").removesuffix("/v1beta")
    found: set[str] = set()
    token = ""
    for _ in range(MAX_PAGES):
        query = "?pageSize=1000" + (f"&pageToken={quote(token)}" if token else "")
        page = await _get(provider, client, redactor, f"{root}/v1beta/models{query}", {"x-goog-api-key": key})
        found.update(str(m["name"]).removeprefix("models/") for m in page.models if "name" in m)
        if not page.nextPageToken:
            break
        token = page.nextPageToken
    return sorted(found)


async def _azure(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, key: str
) -> list[str]:
    spec = provider.spec
    assert isinstance(spec, AzureProvider)
    url = f"{provider.base_url}/openai/deployments?api-version={AZURE_LIST_VERSION}"
    page = await _get(provider, client, redactor, url, {"api-key": key})
    by_deployment = {d: m for m, d in spec.deployments.items()}
    return sorted({by_deployment.get(str(d["id"]), str(d["id"])) for d in page.data if "id" in d})


async def _get(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, url: str, auth: dict[str, str]
) -> _Page:
    call = UpstreamCall(provider=provider, endpoint="models", method="GET", model="", body=b"",
                        content_type="application/json", stream=False, api_key="")
    try:
        response = await send_http(client, call, url, auth)
        raw = await response.read()
    except Exception as exc:  # transport errors of any selected client: all mean "unreachable"
        raise DiscoveryError(redactor.text(f"{provider.id}: cannot list models ({exc})")) from None
    if response.status >= 400:
        raise DiscoveryError(f"{provider.id}: HTTP {response.status}: {error_detail(raw, redactor)}")
    try:
        return msgspec.json.decode(raw, type=_Page)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DiscoveryError(f"{provider.id}: the model list is not what was expected ({exc})") from None
