"""A fake suno-api service on 127.0.0.1 in New API's task dialect: `POST /suno/submit/music|lyrics`
-> {"code": "success", "data": <task id>}, `GET /suno/fetch/{id}` -> {"code": "success", "data":
<task>}. A task moves one step per fetch: SUBMITTED -> IN_PROGRESS -> SUCCESS, or FAILURE when its
prompt contains "FAIL". `duplicate_id` makes the next submits answer an id already given."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp


@dataclass
class SunoJob:
    id: str
    action: str
    prompt: str
    status: str = "SUBMITTED"
    submit_time: int = field(default_factory=lambda: int(time.time()))

    def step(self) -> None:
        if self.status == "SUBMITTED":
            self.status = "IN_PROGRESS"
        elif self.status == "IN_PROGRESS":
            self.status = "FAILURE" if "FAIL" in self.prompt else "SUCCESS"

    def doc(self) -> dict[str, Any]:
        done = self.status in ("SUCCESS", "FAILURE")
        clips = [{"id": f"clip-{self.id}", "title": "song", "audio_url": f"https://cdn.example/{self.id}.mp3",
                  "metadata": {"duration": 128.9}}] if self.status == "SUCCESS" else None
        return {"task_id": self.id, "action": self.action, "status": self.status,
                "fail_reason": "refused" if self.status == "FAILURE" else "", "submit_time": self.submit_time,
                "finish_time": int(time.time()) if done else 0,
                "progress": "100%" if done else "0%", "data": clips}


class FakeSuno:
    def __init__(self, key: str = "suno-upstream-key") -> None:
        self.key = key
        self.jobs: dict[str, SunoJob] = {}
        self.submits: list[dict[str, Any]] = []
        self.duplicate_id: str | None = None
        self.hold = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._app = ThreadedApp(self._handle)
        self.port = 0

    def start(self) -> FakeSuno:
        self.port = self._app.start()
        return self

    def stop(self) -> None:
        self._app.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return web.json_response({"code": "unauthorized", "message": "bad key", "data": None}, status=401)
        path = request.path
        if request.method == "POST" and path.startswith("/suno/submit/"):
            doc = json.loads(await request.read() or b"{}")
            self.submits.append(doc)
            action = path.rsplit("/", 1)[-1].upper()
            prompt = str(doc.get("prompt") or doc.get("gpt_description_prompt") or "")
            with self._lock:
                job_id = self.duplicate_id if self.duplicate_id in self.jobs else f"suno-{next(self._ids)}"
                assert job_id is not None
                self.jobs.setdefault(job_id, SunoJob(job_id, action, prompt))
            return web.json_response({"code": "success", "message": "", "data": job_id})
        if request.method == "GET" and path.startswith("/suno/fetch/"):
            job = self.jobs.get(path.rsplit("/", 1)[-1])
            if job is None:
                return web.json_response({"code": "task_not_exist", "message": "no such task", "data": None})
            if not self.hold:
                job.step()
            return web.json_response({"code": "success", "message": "", "data": job.doc()})
        return web.json_response({"code": "not_found", "message": "unknown path", "data": None}, status=404)
