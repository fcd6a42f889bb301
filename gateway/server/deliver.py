"""Relaying an upstream's answer to the client: whole, or streamed event by event through the
codec's tap (no buffering beyond an incomplete SSE event).

What the client gets is what the usage row says: a whole answer that is cut, or that is not the
API's JSON, becomes a 502 in the client's shape (raised here, answered at the error boundary);
a stream cut after its first bytes ends with an error event in the client's format. Every byte
passes the snapshot's redactor (an upstream may echo the credentials it was sent).
(docs/architecture.md, "The request path", step 8)"""

from __future__ import annotations

import contextlib

import msgspec

from ..config.snapshot import RouteTarget
from ..errors import UpstreamError
from ..providers.adapters.base import UpstreamResponse
from ..providers.translate.codec import Codec, Outgoing, StreamTap
from ..providers.translate.stream_abort import CUT_CODE, cut_event
from ..providers.transport.base import UpstreamConnectError, UpstreamTimeout
from ..providers.wire.eventstream import CONTENT_TYPE as EVENTSTREAM
from ..redact import Redactor
from .admission import Prepared
from .exchange import Exchange
from .rsgi import Proto, StreamTransport

_FORWARD_HEADERS = ("content-type", "openai-processing-ms", "retry-after")
_CUT = (UpstreamTimeout, UpstreamConnectError, OSError)
# answers that may legitimately be something other than JSON (audio bytes; text/srt/vtt transcripts)
_NOT_JSON_ENDPOINTS = frozenset({"audio/speech", "audio/transcriptions", "audio/translations"})


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
    proto: Proto,
    response: UpstreamResponse,
    codec: Codec,
    out: Outgoing,
    p: Prepared,
    target: RouteTarget,
    x: Exchange,
    redactor: Redactor,
) -> None:
    content_type = str(response.headers.get("content-type", ""))
    # Bedrock's ConverseStream answers in AWS event-stream framing, which its codec's tap reads
    is_sse = "text/event-stream" in content_type or EVENTSTREAM in content_type
    x.status = response.status
    if p.head.stream and is_sse:
        await _stream(proto, response, codec.stream(out), p, target, x, redactor)
        return
    # No `await` in a `finally` in this module (a mypyc bug: docs/architecture.md)
    try:  # the whole answer (inline: a coroutine less per request)
        raw = await response.read()
    except BaseException as exc:
        await response.aclose()
        if isinstance(exc, _CUT):
            # The upstream started answering, so it may have done the work: not retried.
            raise UpstreamError(f"upstream {target.provider} cut its answer short ({_reason(exc)})",
                                code="upstream_response_cut") from None
        raise
    await response.aclose()
    problem = body_problem(x.endpoint, str(response.headers.get("content-type") or ""), raw)
    if problem is not None:
        raise UpstreamError(f"upstream {target.provider} answered HTTP {response.status} with {problem}",
                            code="upstream_bad_response")
    data, x.usage = codec.response(raw, out)
    x.mark_first_byte()
    headers = response_headers(response, target, x, p, False)
    proto.response_bytes(response.status, headers, redactor.data(data))


def body_problem(endpoint: str, content_type: str, raw: bytes) -> str | None:
    """Why a successful whole answer is not what the API promises, or None."""
    media = content_type.partition(";")[0].strip().lower()
    if "html" in media:
        return "an HTML page instead of the API's JSON"
    if endpoint in _NOT_JSON_ENDPOINTS:
        return None
    try:
        msgspec.json.decode(raw, type=msgspec.Raw)  # validates the syntax without building objects
    except msgspec.DecodeError:
        return "a body that is not valid JSON"
    return None


async def _stream(
    proto: Proto, response: UpstreamResponse, tap: StreamTap, p: Prepared, target: RouteTarget, x: Exchange,
    redactor: Redactor,
) -> None:
    transport = proto.response_stream(response.status, response_headers(response, target, x, p, True))
    try:
        await _relay_stream(response, tap, p, target, x, redactor, transport)
    except BaseException:
        _account_stream(tap, x)
        await response.aclose()
        raise
    _account_stream(tap, x)
    await response.aclose()


def _account_stream(tap: StreamTap, x: Exchange) -> None:
    x.error_type = x.error_type or tap.error
    x.usage = tap.usage
    if tap.usage is None:  # the estimate needs the relayed text; counting it is not free
        x.relayed_chars = tap.chars


async def _relay_stream(
    response: UpstreamResponse, tap: StreamTap, p: Prepared, target: RouteTarget, x: Exchange,
    redactor: Redactor, transport: StreamTransport,
) -> None:
    try:
        async for chunk in response.chunks():
            data = tap.feed(chunk)
            if data:
                x.mark_first_byte()
                await transport.send_bytes(redactor.data(data))
        rest = tap.flush()
        if rest:
            await transport.send_bytes(redactor.data(rest))
    except _CUT as exc:
        x.error_type = f"{CUT_CODE}:{type(exc).__name__}"
        message = f"upstream {target.provider} cut the stream short ({_reason(exc)}): answer incomplete"
        with contextlib.suppress(RuntimeError):  # the client may be gone too
            await transport.send_bytes(cut_event(p.client_family, x.endpoint, message, tap))
    except RuntimeError:  # granian: the client is gone (RSGIProtocolClosed)
        x.cancelled = True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "read timeout"
    return str(exc) or type(exc).__name__
