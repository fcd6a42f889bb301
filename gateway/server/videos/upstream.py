"""What each provider kind is sent for a video and what it answers, mapped to OpenAI's video
object: OpenAI and Azure speak the Videos API (their documents are relayed under the gateway's
id); Gemini's Veo is a long-running operation whose state becomes a video object here."""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

import msgspec

from ...config.snapshot import ProviderRuntime
from ...config.types import AzureProvider
from ...errors import UpstreamError
from ...providers.wire import videos as wire
from ...tasks.adapter import Seen
from ...tasks.store import TaskRow
from ..task_upstream import JSON, snippet
from .parse import VideoRequest, with_model

VEO = "gemini"


def new_id() -> str:
    """The gateway's id of a Veo video (an operation name is a path, not an id)."""
    return "video_" + secrets.token_hex(12)


def create_call(provider: ProviderRuntime, req: VideoRequest, model: str) -> tuple[str, bytes, str]:
    """(path, body, content type) of a create."""
    if provider.kind == VEO:
        return (
            f"models/{quote(model, safe='-._~')}:predictLongRunning",
            wire.veo_body(req.prompt, req.seconds, req.size),
            JSON,
        )
    if isinstance(provider.spec, AzureProvider):  # Azure names the deployment in the body's model
        model = provider.spec.deployments.get(model, model)
    return "videos", with_model(req, model), req.content_type


def remix_call(task: TaskRow, prompt: str) -> tuple[str, bytes]:
    return f"videos/{quote(task.upstream_id, safe='')}/remix", msgspec.json.encode({"prompt": prompt})


def read_created(provider: ProviderRuntime, status: int, data: bytes) -> tuple[str, wire.VideoState | None]:
    """(upstream id, the upstream's video state: None for Veo) of an accepted create or remix."""
    if status >= 400:
        raise UpstreamError(
            f"upstream {provider.id} refused the video: HTTP {status}: {snippet(data)}",
            status=502 if status >= 500 else status,
            code="upstream_refused",
        )
    if provider.kind == VEO:
        op = wire.decode_operation(data)
        if op is None or op.name is None:
            raise UpstreamError(
                f"upstream {provider.id} did not answer with an operation", code="upstream_bad_response"
            )
        return op.name, None
    state = wire.decode_state(data)
    if state is None or state.id is None:
        raise UpstreamError(
            f"upstream {provider.id} did not answer with a video object", code="upstream_bad_response"
        )
    return state.id, state


def first_doc(
    provider: ProviderRuntime,
    video_id: str,
    data: bytes,
    req_model: str,
    prompt: str,
    seconds: int,
    size: str,
    remixed_from: str | None = None,
) -> tuple[str, bytes]:
    """The client's first video object: (status, document)."""
    if provider.kind == VEO:
        return "queued", wire.video_doc(
            video_id, req_model, seconds, size, prompt, int(time.time()), remixed_from=remixed_from
        )
    state = wire.decode_state(data)
    assert state is not None and state.status is not None
    doc = wire.with_id(data, video_id, req_model)
    if remixed_from is not None:
        doc = wire.with_fields(doc, remixed_from_video_id=remixed_from)
    return state.status, doc


def fetch_path(provider: ProviderRuntime, task: TaskRow) -> str:
    if provider.kind == VEO:
        return task.upstream_id  # the operation's name, e.g. models/veo-3/operations/abc
    return f"videos/{quote(task.upstream_id, safe='')}"


def seen(provider: ProviderRuntime, task: TaskRow, status: int, data: bytes) -> Seen | None:
    """The task as the upstream's answer shows it; None when the answer says nothing usable."""
    if status != 200:
        return None
    if provider.kind == VEO:
        op = wire.decode_operation(data)
        if op is None:
            return None
        state, doc = wire.veo_progress(task.doc, op, int(time.time()))
        return Seen(state, doc, state in wire.FINISHED)
    video = wire.decode_state(data)
    if video is None or video.status is None:
        return None
    doc = wire.with_id(data, task.id, task.requested_model)
    return Seen(
        video.status, wire.keep_fields(doc, task.doc, "remixed_from_video_id"), video.status in wire.FINISHED
    )


def content_path(provider: ProviderRuntime, task: TaskRow, variant: str | None) -> str:
    path = f"videos/{quote(task.upstream_id, safe='')}/content"
    return f"{path}?variant={quote(variant, safe='')}" if variant else path
