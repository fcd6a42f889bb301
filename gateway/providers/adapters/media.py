"""The asynchronous media APIs (videos, Gemini's Veo operations, Suno tasks): each call's URL
and auth header by provider kind, for paths the caller names (../wire/videos.py, ../wire/suno.py).

    openai, openai-compatible   {base_url}/{path}                 Authorization: Bearer
    azure                       {base_url}/openai/v1/{path}       api-key
    gemini                      {root}/v1beta/{path}              x-goog-api-key
    suno                        {base_url}/{path}                 Authorization: Bearer

An absolute URL (a Veo video's download URI) gets the provider's key only when it is on the
provider's own origin: the key never goes to another host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...config.snapshot import ProviderRuntime
from ..transport.base import UpstreamClient
from .base import UpstreamCall, UpstreamResponse, send_http

VIDEO_KINDS = frozenset({"openai", "openai-compatible", "azure", "gemini"})


def _root(provider: ProviderRuntime) -> str:
    base = provider.base_url.rstrip("/")
    if provider.kind == "azure":
        return f"{base}/openai/v1"
    if provider.kind == "gemini":
        return f"{base.removesuffix('/v1beta')}/v1beta"
    return base


def _auth(provider: ProviderRuntime, api_key: str) -> dict[str, str]:
    if not api_key:
        return {}
    if provider.kind == "azure":
        return {"api-key": api_key}
    if provider.kind == "gemini":
        return {"x-goog-api-key": api_key}
    return {"authorization": f"Bearer {api_key}"}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def media_url(provider: ProviderRuntime, path: str) -> tuple[str, bool]:
    """(URL, whether the provider's key may go with it)."""
    if path.startswith(("http://", "https://")):
        return path, _origin(path) == _origin(provider.base_url)
    return f"{_root(provider)}/{path}", True


async def send_media(
    client: UpstreamClient, provider: ProviderRuntime, api_key: str, method: str, path: str,
    body: bytes = b"", content_type: str = "application/json", headers: tuple[tuple[str, str], ...] = (),
) -> UpstreamResponse:  # fmt: skip
    url, keyed = media_url(provider, path)
    call = UpstreamCall(
        provider=provider, endpoint=path, method=method, model="", body=body, content_type=content_type,
        stream=False, api_key=api_key, headers=headers,
    )  # fmt: skip
    return await send_http(client, call, url, _auth(provider, api_key) if keyed else {})
