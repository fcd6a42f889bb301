"""A fake video upstream on 127.0.0.1 in one of three dialects:

- "openai": OpenAI's Videos API under /v1 (`POST /v1/videos` JSON or multipart, `GET
  /v1/videos/{id}`, `/content` with Range, `DELETE`, `POST .../remix`), Bearer auth;
- "azure": the same under /openai/v1 with the `api-key` header;
- "gemini": Veo's `POST /v1beta/models/{model}:predictLongRunning`, `GET /v1beta/{operation}`,
  and the video file at `GET /v1beta/files/{id}:download` (x-goog-api-key).

A job moves one step per read: queued -> in_progress (50%) -> completed, or failed when its
prompt contains "FAIL". `duplicate_id` makes the next creates answer an id already given.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp

VIDEO_BYTES = bytes(range(256)) * 64  # 16 KiB of "mp4"


@dataclass
class Job:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    status: str = "queued"
    progress: int = 0
    reads: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))

    def step(self) -> None:
        self.reads += 1
        if self.status == "queued":
            self.status, self.progress = "in_progress", 50
        elif self.status == "in_progress":
            if "FAIL" in self.prompt:
                self.status = "failed"
            else:
                self.status, self.progress = "completed", 100

    def doc(self) -> dict[str, Any]:
        error = {"code": "moderation_blocked", "message": "the prompt was refused"} if self.status == "failed" else None
        return {"id": self.id, "object": "video", "model": self.model, "status": self.status,
                "progress": self.progress, "seconds": self.seconds, "size": self.size, "prompt": self.prompt,
                "created_at": self.created_at, "completed_at": None, "expires_at": None, "error": error}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeVideoUpstream:
    def __init__(self, dialect: str = "openai", key: str = "sk-video-upstream") -> None:
        self.dialect, self.key = dialect, key
        self.jobs: dict[str, Job] = {}
        self.seen: list[Seen] = []
        self.duplicate_id: str | None = None
        self.hold = False  # jobs stay queued while True (a gateway restart mid-task)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._app = ThreadedApp(self._handle)
        self.port = 0

    def start(self) -> FakeVideoUpstream:
        self.port = self._app.start()
        return self

    def stop(self) -> None:
        self._app.stop()

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.dialect == "openai" else root

    def creates(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and not s.path.endswith("/remix")]

    def _authorized(self, request: web.Request) -> bool:
        if self.dialect == "azure":
            return request.headers.get("api-key") == self.key
        if self.dialect == "gemini":
            return request.headers.get("x-goog-api-key") == self.key
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key", "code": "invalid_api_key"}}, status=401)
        if self.dialect == "gemini":
            return await self._gemini(request, body)
        prefix = "/v1/videos" if self.dialect == "openai" else "/openai/v1/videos"
        rest = request.path.removeprefix(prefix)
        return await self._openai(request, rest, body)

    def _new_id(self, prefix: str) -> str:
        if self.duplicate_id is not None and self.duplicate_id in self.jobs:
            return self.duplicate_id
        return f"{prefix}{next(self._ids)}"

    async def _openai(self, request: web.Request, rest: str, body: bytes) -> web.StreamResponse:
        if request.method == "POST" and rest == "":
            if request.content_type == "multipart/form-data":
                form = await _form(request, body)
            else:
                form = {k: str(v) for k, v in (await _json(body)).items()}
            with self._lock:
                job_id = self._new_id("video_")
                job = self.jobs.setdefault(job_id, Job(job_id, form.get("model", "sora-2"), form.get("prompt", ""),
                                                       form.get("seconds", "4"), form.get("size", "720x1280")))
            return web.json_response(job.doc())
        parts = rest.strip("/").split("/")
        job = self.jobs.get(parts[0])
        if job is None:
            return web.json_response({"error": {"message": "no such video", "code": "not_found"}}, status=404)
        if request.method == "DELETE" and len(parts) == 1:
            del self.jobs[job.id]
            return web.json_response({"id": job.id, "object": "video.deleted", "deleted": True})
        if request.method == "GET" and len(parts) == 1:
            if not self.hold:
                job.step()
            return web.json_response(job.doc())
        if request.method == "GET" and parts[1:] == ["content"]:
            if job.status != "completed":
                return web.json_response({"error": {"message": "not ready"}}, status=404)
            return _file(request, VIDEO_BYTES)
        if request.method == "POST" and parts[1:] == ["remix"]:
            prompt = (await _json(body)).get("prompt", "")
            with self._lock:
                new_id = self._new_id("video_")
                remixed = self.jobs.setdefault(new_id, Job(new_id, job.model, prompt, job.seconds, job.size))
            return web.json_response({**remixed.doc(), "remixed_from_video_id": job.id})
        return web.json_response({"error": {"message": "unknown path"}}, status=404)

    async def _gemini(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and path.endswith(":predictLongRunning"):
            model = path.removeprefix("/v1beta/models/").removesuffix(":predictLongRunning")
            doc = await _json(body)
            params = doc.get("parameters", {})
            with self._lock:
                name = self._new_id(f"models/{model}/operations/op")
                self.jobs.setdefault(name, Job(name, model, doc["instances"][0]["prompt"],
                                               str(params.get("durationSeconds")), params.get("aspectRatio", "")))
            return web.json_response({"name": name})
        if path.startswith("/v1beta/files/"):
            return _file(request, VIDEO_BYTES)
        job = self.jobs.get(path.removeprefix("/v1beta/"))
        if job is None or request.method != "GET":
            return web.json_response({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}},
                                     status=404)
        if not self.hold:
            job.step()
        out: dict[str, Any] = {"name": job.id, "done": job.status in ("completed", "failed")}
        if job.status == "failed":
            out["error"] = {"code": 3, "message": "the prompt was refused"}
        elif job.status == "completed":
            uri = f"http://127.0.0.1:{self.port}/v1beta/files/{job.id.rsplit('/', 1)[-1]}:download?alt=media"
            out["response"] = {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}
        return web.json_response(out)


async def _json(body: bytes) -> dict[str, Any]:
    import json

    doc = json.loads(body or b"{}")
    return doc if isinstance(doc, dict) else {}


async def _form(request: web.Request, body: bytes) -> dict[str, str]:
    """The text fields of a multipart body (the stdlib's MIME parser; files are skipped)."""
    from email import policy
    from email.parser import BytesParser

    head = f"content-type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    out: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name and not part.get_filename():
            out[str(name)] = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return out


def _file(request: web.Request, data: bytes) -> web.Response:
    rng = request.headers.get("range")
    headers = {"content-type": "video/mp4", "accept-ranges": "bytes"}
    if rng and rng.startswith("bytes="):
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        start, end = int(start_s), int(end_s) if end_s else len(data) - 1
        headers["content-range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start:end + 1], headers=headers)
    return web.Response(body=data, headers=headers)
