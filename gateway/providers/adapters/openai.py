"""OpenAI, OpenAI-compatible servers (vLLM, Ollama, DeepSeek, Groq...) and Azure OpenAI."""

from __future__ import annotations

from ...config.types import AzureProvider
from ..transport.base import UpstreamClient
from .base import UpstreamCall, UpstreamResponse, send_http


class OpenAIAdapter:
    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        url = f"{call.provider.base_url}/{call.endpoint}"
        if call.query:
            url = f"{url}?{call.query}"
        auth = {"authorization": f"Bearer {call.api_key}"} if call.api_key else {}
        return await send_http(client, call, url, auth)


class AzureAdapter:
    """Azure routes by deployment in the URL and authenticates with `api-key`."""

    async def send(self, call: UpstreamCall, client: UpstreamClient) -> UpstreamResponse:
        spec = call.provider.spec
        assert isinstance(spec, AzureProvider)
        deployment = spec.deployments.get(call.model, call.model)
        url = (
            f"{call.provider.base_url}/openai/deployments/{deployment}/{call.endpoint}"
            f"?api-version={spec.api_version}"
        )
        return await send_http(client, call, url, {"api-key": call.api_key})
