"""Relaying an upstream's answer to the client: whole, or streamed event by event through the
codec's tap (no buffering beyond an incomplete SSE event)."""

from __future__ import annotations

from typing import Any

from ..config.snapshot import RouteTarget
from ..providers.base import UpstreamResponse
from ..providers.codec import Codec, Outgoing
from ..providers.transport import UpstreamConnectError, UpstreamTimeout
from .admission import Prepared
from .exchange import Exchange

_FORWARD_HEADERS = ("content-type", "openai-processing-ms", "retry-after")


def response_headers(
    response: UpstreamResponse, target: RouteTarget, x: Exchange, p: Prepared, stream: bool
) -> list[tuple[str, str]]:
    out = [] if stream else [(h, v) for h in _FORWARD_HEADERS if (v := response.headers.get(h))]
    if stream:
        out.append(("content-type", "text/event-stream"))
        out.append(("cache-control", "no-cache"))
    out += [
        ("x-request-id", x.request_id),
        ("x-tollgate-provider", target.provider),
        ("x-tollgate-model", target.model),
        ("x-tollgate-attempts", str(x.attempts)),
    ]
    if p.extra_headers:
        out += p.extra_headers
    return out


async def deliver(
    proto: Any,
    response: UpstreamResponse,
    codec: Codec,
    out: Outgoing,
    p: Prepared,
    target: RouteTarget,
    x: Exchange,
) -> None:
    is_sse = "text/event-stream" in str(response.headers.get("content-type", ""))
    x.status = response.status
    if not (p.head.stream and is_sse):
        data, x.usage = codec.response(await response.read(), out)
        x.mark_first_byte()
        proto.response_bytes(response.status, response_headers(response, target, x, p, False), data)
        return
    tap = codec.stream(out)
    transport = proto.response_stream(response.status, response_headers(response, target, x, p, True))
    try:
        async for chunk in response.chunks():
            data = tap.feed(chunk)
            if data:
                x.mark_first_byte()
                await transport.send_bytes(data)
        rest = tap.flush()
        if rest:
            await transport.send_bytes(rest)
    except (UpstreamTimeout, UpstreamConnectError, OSError) as exc:
        x.error_type = f"upstream_stream_cut:{type(exc).__name__}"
    except RuntimeError:  # granian: the client is gone (RSGIProtocolClosed)
        x.cancelled = True
    finally:
        x.error_type = x.error_type or tap.error
        x.usage = tap.usage
        if tap.usage is None:  # the estimate needs the relayed text; counting it is not free
            x.relayed_chars = tap.chars
        await response.aclose()
