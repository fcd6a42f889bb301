"""Generated video, two upstream dialects behind the one client surface `/v1/videos`:

- OpenAI's Videos API (openai, azure): `POST videos` -> a video object
  `{"id", "object": "video", "model", "status": queued|in_progress|completed|failed, "progress",
  "seconds", "size", "created_at", "completed_at", "error": {"code", "message"}}`, then
  `GET videos/{id}`, `GET videos/{id}/content`, `DELETE videos/{id}`, `POST videos/{id}/remix`.
- Gemini's Veo (gemini): `POST models/{model}:predictLongRunning` -> an operation `{"name"}`,
  polled with `GET {name}` until `done`, then `response.generateVideoResponse.generatedSamples[].
  video.uri` (or `error`).

Only the fields the gateway reads are decoded; client documents are built here in OpenAI's shape.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

STATUSES = ("queued", "in_progress", "completed", "failed")
FINISHED = frozenset({"completed", "failed"})
DEFAULT_MODEL, DEFAULT_SECONDS, DEFAULT_SIZE = "sora-2", 4, "720x1280"
MAX_SECONDS = 120
SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")


class VideoCreate(msgspec.Struct):
    """The JSON body of `POST /v1/videos` (multipart bodies carry the same fields)."""

    prompt: str = ""
    model: str | None = None
    seconds: str | int | None = None
    size: str | None = None


class Remix(msgspec.Struct):
    prompt: str = ""


class VideoError(msgspec.Struct):
    code: str | int | None = None
    message: str = ""


class VideoState(msgspec.Struct):
    """What the gateway reads of an upstream video object."""

    id: str | None = None
    status: str | None = None
    progress: int | float | None = None
    error: VideoError | None = None


class _Video(msgspec.Struct):
    uri: str | None = None


class _Sample(msgspec.Struct):
    video: _Video | None = None


class _Generated(msgspec.Struct):
    generatedSamples: list[_Sample] = []
    raiMediaFilteredReasons: list[str] = []


class _OpResponse(msgspec.Struct):
    generateVideoResponse: _Generated | None = None


class _OpError(msgspec.Struct):
    code: int | None = None
    message: str = ""


class Operation(msgspec.Struct):
    name: str | None = None
    done: bool = False
    error: _OpError | None = None
    response: _OpResponse | None = None

    def video_uri(self) -> str | None:
        generated = self.response.generateVideoResponse if self.response else None
        for sample in generated.generatedSamples if generated else ():
            if sample.video is not None and sample.video.uri:
                return sample.video.uri
        return None

    def failure(self) -> str | None:
        """Why a finished operation has no video; None when it has one (or is not done)."""
        if not self.done:
            return None
        if self.error is not None:
            return self.error.message or f"error {self.error.code}"
        if self.video_uri() is None:
            generated = self.response.generateVideoResponse if self.response else None
            reasons = "; ".join(generated.raiMediaFilteredReasons) if generated else ""
            return reasons or "the operation finished without a video"
        return None


def decode_state(data: bytes) -> VideoState | None:
    try:
        state = msgspec.json.decode(data, type=VideoState)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return state if state.id and state.status in STATUSES else None


def decode_operation(data: bytes) -> Operation | None:
    try:
        op = msgspec.json.decode(data, type=Operation)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return op if op.name else None


def with_id(doc: bytes, video_id: str, model: str | None = None) -> bytes:
    """An upstream video object under the gateway's id (and the client's model name)."""
    fields: dict[str, Any] = msgspec.json.decode(doc)
    fields["id"] = video_id
    if model is not None:
        fields["model"] = model
    fields.pop("remixed_from_video_id", None)  # an upstream id the client does not know
    return msgspec.json.encode(fields)


def video_doc(
    video_id: str, model: str, seconds: int, size: str, prompt: str, created_at: int,
    status: str = "queued", progress: int = 0, error: dict[str, str] | None = None,
    completed_at: int | None = None, remixed_from: str | None = None,
) -> bytes:  # fmt: skip
    return msgspec.json.encode({
        "id": video_id, "object": "video", "model": model, "status": status, "progress": progress,
        "seconds": str(seconds), "size": size, "prompt": prompt, "created_at": created_at,
        "completed_at": completed_at, "expires_at": None, "error": error,
        "remixed_from_video_id": remixed_from,
    })  # fmt: skip


def veo_body(prompt: str, seconds: int, size: str) -> bytes:
    """`predictLongRunning`'s body for an OpenAI-style request: the size becomes Veo's aspect
    ratio and resolution."""
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    parameters: dict[str, Any] = {"aspectRatio": "16:9" if w >= h else "9:16", "durationSeconds": seconds}
    if min(w, h) >= 1080:
        parameters["resolution"] = "1080p"
    return msgspec.json.encode({"instances": [{"prompt": prompt}], "parameters": parameters})


def veo_progress(doc: bytes, op: Operation, now: int) -> tuple[str, bytes]:
    """The client's video object after a look at the operation: (status, document)."""
    fields: dict[str, Any] = msgspec.json.decode(doc)
    reason = op.failure()
    if reason is not None:
        fields.update(
            status="failed",
            error={"code": "video_generation_failed", "message": reason[:500]},
            completed_at=now,
        )
    elif op.done:
        fields.update(status="completed", progress=100, completed_at=now)
    else:
        fields.update(status="in_progress")
    return str(fields["status"]), msgspec.json.encode(fields)


def with_fields(doc: bytes, **fields: Any) -> bytes:
    whole: dict[str, Any] = msgspec.json.decode(doc)
    whole.update(fields)
    return msgspec.json.encode(whole)


def keep_fields(doc: bytes, previous: bytes, *names: str) -> bytes:
    """`doc` with the named fields of `previous` (fields only the gateway knows)."""
    before: dict[str, Any] = msgspec.json.decode(previous)
    kept = {n: before[n] for n in names if before.get(n) is not None}
    return with_fields(doc, **kept) if kept else doc
