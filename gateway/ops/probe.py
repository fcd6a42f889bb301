"""`tollgate providers test` and `POST /admin/providers/{id}/test`: one minimal real request per
API key and model kind (chat; embeddings for embedding models), through the relay's own code:
the codec table (providers/codecs.py), the provider's adapter and the upstream transport.

What it reports per key: status, latency (to the whole answer), TTFB (to the response head, or
to the first streamed chunk), tokens, and the upstream's error message, secrets masked."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import msgspec

from ..config.snapshot import ProviderRuntime
from ..core.usage import TokenUsage
from ..errors import GatewayError
from ..providers.adapters.base import UpstreamCall, UpstreamResponse
from ..providers.adapters.registry import adapter_for
from ..providers.codecs import NoCodec, codec_for
from ..providers.translate.codec import Codec, Outgoing
from ..providers.transport.base import UpstreamClient, UpstreamConnectError, UpstreamTimeout
from ..redact import Redactor, mask_key
from .errors import error_detail

UNTESTED_KINDS = frozenset({"midjourney"})  # no minimal request that costs nothing
PROBE_TIMEOUT_S = 60.0


@dataclass(slots=True)
class ProbeResult:
    provider: str
    key_index: int
    key: str  # masked
    model: str
    kind: str  # chat | embeddings
    stream: bool
    ok: bool
    status: int | None = None
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    skipped: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def model_kind(model: str) -> str:
    """Embedding models are named so by every provider (text-embedding-3-small,
    gemini-embedding-001, text-embedding-004, nomic-embed-text...)."""
    return "embeddings" if "embed" in model.lower() else "chat"


def probe_models(provider: ProviderRuntime, model: str | None) -> list[tuple[str, str]]:
    """(model, kind) to test: the given one, else the first listed model of each kind."""
    if model:
        return [(model, model_kind(model))]
    found: dict[str, str] = {}
    for name in provider.spec.models:
        found.setdefault(model_kind(name), name)
    return [(name, kind) for kind, name in sorted(found.items())]


def _body(model: str, kind: str, stream: bool) -> bytes:
    if kind == "embeddings":
        return msgspec.json.encode({"model": model, "input": "ping"})
    doc: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "ping"}],
                              "max_tokens": 5}
    if stream:
        doc.update(stream=True, stream_options={"include_usage": True})
    return msgspec.json.encode(doc)


async def probe_provider(
    provider: ProviderRuntime, client: UpstreamClient, redactor: Redactor, *, model: str | None = None,
    stream: bool = False, indexes: list[int] | None = None,
) -> list[ProbeResult]:
    """Every key (or those of `indexes`) times every model kind, concurrently."""
    keys = provider.api_keys or ("",)
    chosen = indexes if indexes is not None else list(range(len(keys)))
    models = probe_models(provider, model)
    if provider.kind in UNTESTED_KINDS or not models:
        why = (f"{provider.kind} providers are not tested" if provider.kind in UNTESTED_KINDS
               else "no model to test: list models on the provider or pass --model")
        return [ProbeResult(provider.id, i, mask_key(keys[i]), model or "", "-", False, ok=False,
                            error=why, skipped=provider.kind in UNTESTED_KINDS) for i in chosen]
    jobs = [probe_key(provider, i, keys[i], name, kind, stream, client, redactor)
            for i in chosen for name, kind in models]
    return list(await asyncio.gather(*jobs))


async def probe_key(
    provider: ProviderRuntime, index: int, api_key: str, model: str, kind: str, stream: bool,
    client: UpstreamClient, redactor: Redactor,
) -> ProbeResult:
    stream = stream and kind == "chat"
    result = ProbeResult(provider.id, index, mask_key(api_key), model, kind, stream, ok=False)
    try:
        await asyncio.wait_for(_run(provider, api_key, result, client, redactor),
                               min(PROBE_TIMEOUT_S, provider.timeouts.total))
    except (UpstreamTimeout, TimeoutError):
        result.error = "timed out waiting for the upstream"
    except (UpstreamConnectError, OSError) as exc:
        result.error = redactor.text(f"connection failed ({exc})")
    except NoCodec as exc:
        result.error = str(exc)
    except (GatewayError, msgspec.MsgspecError, ValueError) as exc:  # an answer we cannot read
        result.error = redactor.text(f"unreadable answer: {exc}")[:500]
    return result


async def _run(
    provider: ProviderRuntime, api_key: str, r: ProbeResult, client: UpstreamClient, redactor: Redactor
) -> None:
    endpoint = "embeddings" if r.kind == "embeddings" else "chat/completions"
    upstream_model = provider.model_map.get(r.model, r.model)
    codec = codec_for("openai", provider.kind, endpoint)
    out = Outgoing(endpoint=endpoint, body=_body(r.model, r.kind, r.stream), model=r.model,
                   upstream_model=upstream_model, stream=r.stream, client_wants_usage=True, provider=provider)
    up_endpoint, body = codec.request(out)
    call = UpstreamCall(provider=provider, endpoint=up_endpoint, method="POST", model=upstream_model,
                        body=body, content_type="application/json", stream=r.stream, api_key=api_key)
    started = time.monotonic()
    response = await adapter_for(provider.kind).send(call, client)
    r.status, r.ttfb_ms = response.status, _ms(started)
    try:
        if response.status >= 400:
            r.error = error_detail(await response.read(), redactor)
        else:
            usage = await (_streamed(response, codec, out, r, started) if r.stream
                           else _whole(response, codec, out))
            r.ok = r.error is None
            if usage is not None:
                r.prompt_tokens, r.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    finally:
        await response.aclose()
    r.latency_ms = _ms(started)


async def _whole(response: UpstreamResponse, codec: Codec, out: Outgoing) -> TokenUsage | None:
    _body_out, usage = codec.response(await response.read(), out)
    return usage


async def _streamed(
    response: UpstreamResponse, codec: Codec, out: Outgoing, r: ProbeResult, started: float
) -> TokenUsage | None:
    tap = codec.stream(out)
    first = True
    async for chunk in response.chunks():
        if first:
            r.ttfb_ms, first = _ms(started), False
        tap.feed(chunk)
    tap.flush()
    if tap.error:
        r.error = tap.error[:500]
    return tap.usage


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
