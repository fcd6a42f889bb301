"""A fake midjourney-proxy on 127.0.0.1 (the open-source dialect with the "plus" endpoints).

It records every request with the `mj-api-secret` it carried and the mode prefix of its path
(`/mj-fast/mj/...`), answers submits like the proxy, and moves a task one step on each fetch:
SUBMITTED -> IN_PROGRESS ("50%") -> SUCCESS ("100%", image and buttons). A task can be forced
to FAILURE on its next fetch (`force_failure`, or a prompt containing "FAIL"; "CANCEL" cancels it), and the next
submits can be answered with a chosen code (`script_codes`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp

SUBMITS = ("imagine", "action", "change", "simple-change", "blend", "describe", "modal", "shorten")


@dataclass
class MjReceived:
    method: str
    path: str  # after the mode prefix, e.g. /mj/submit/imagine
    mode: str | None
    secret: str | None
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeTask:
    id: str
    action: str
    prompt: str = ""
    status: str = "SUBMITTED"
    progress: str = "0%"
    hash: str = field(default_factory=lambda: str(uuid.uuid4()))
    submit_time: int = field(default_factory=lambda: int(time.time() * 1000))
    start_time: int | None = None
    finish_time: int | None = None
    fail_reason: str | None = None
    fail_next: bool = False
    cancel_next: bool = False
    parent: str | None = None
    fetches: int = 0

    def buttons(self) -> list[dict[str, Any]]:
        if self.status != "SUCCESS":
            return []
        h = self.hash
        if self.action == "UPSCALE":
            ids = [("Vary (Strong)", f"MJ::JOB::high_variation::1::{h}::SOLO"),
                   ("Zoom Out 2x", f"MJ::Outpaint::50::1::{h}::SOLO"),
                   ("Custom Zoom", f"MJ::CustomZoom::{h}"),
                   ("", f"MJ::JOB::pan_left::1::{h}::SOLO"),
                   ("Vary (Region)", f"MJ::Inpaint::1::{h}::SOLO")]
        else:
            ids = [*((f"U{i}", f"MJ::JOB::upsample::{i}::{h}") for i in range(1, 5)),
                   ("", f"MJ::JOB::reroll::0::{h}::SOLO"),
                   *((f"V{i}", f"MJ::JOB::variation::{i}::{h}") for i in range(1, 5))]
        return [{"customId": c, "emoji": "", "label": label, "type": 2, "style": 2} for label, c in ids]

    def doc(self) -> dict[str, Any]:
        done = self.status == "SUCCESS"
        return {
            "id": self.id, "action": self.action, "customId": "", "prompt": self.prompt,
            "promptEn": self.prompt, "description": f"/{self.action.lower()} {self.prompt}".strip(),
            "state": "", "status": self.status, "progress": self.progress,
            "submitTime": self.submit_time, "startTime": self.start_time,
            "finishTime": self.finish_time,
            "imageUrl": f"https://cdn.example/{self.id}.png" if done else None,
            "failReason": self.fail_reason, "buttons": self.buttons(),
            "properties": {"finalPrompt": self.prompt, "messageHash": self.hash},
        }

    def advance(self) -> None:
        now = int(time.time() * 1000)
        if self.status in ("SUCCESS", "FAILURE", "CANCEL", "MODAL"):
            return
        if self.cancel_next:
            self.status, self.progress, self.finish_time = "CANCEL", "", now
        elif self.fail_next:
            self.status, self.progress, self.finish_time = "FAILURE", "", now
            self.fail_reason = self.fail_reason or "[Invalid parameter] forced failure"
        elif self.status in ("NOT_START", "SUBMITTED"):
            self.status, self.progress, self.start_time = "IN_PROGRESS", "50%", now
        else:
            self.status, self.progress, self.finish_time = "SUCCESS", "100%", now


@dataclass
class FakeMidjourneyProxy:
    name: str = "mj"
    secret: str | None = None  # the mj-api-secret it demands; None takes any
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    received: list[MjReceived] = field(default_factory=list)
    codes: list[tuple[int, str]] = field(default_factory=list)  # answers for the next submits
    next_ids: list[str] = field(default_factory=list)  # ids for the next tasks
    port: int = 0
    _counter: int = 0
    _server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.received.clear()
        self.codes.clear()
        self.next_ids.clear()

    def force_failure(self, task_id: str, reason: str = "[Banned prompt] forced failure") -> None:
        task = self.tasks[task_id]
        task.fail_next, task.fail_reason = True, reason

    def script_codes(self, *codes: tuple[int, str]) -> None:
        self.codes.extend(codes)

    def submits(self, kind: str | None = None) -> list[MjReceived]:
        return [r for r in self.received if r.path.startswith(f"/mj/submit/{kind or ''}")]

    def start(self) -> FakeMidjourneyProxy:
        self._server = ThreadedApp(self._handle, port=self.port)  # same port again on a restart
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path, mode = request.path, None
        if path.startswith("/mj-"):
            mode, _, rest = path[4:].partition("/")
            path = "/" + rest
        secret = request.headers.get("mj-api-secret")
        self.received.append(MjReceived(request.method, path, mode, secret, dict(request.headers), body))
        if self.secret is not None and secret != self.secret:
            return web.Response(status=401)
        parts = path.strip("/").split("/")
        if request.method == "POST" and parts[:2] == ["mj", "submit"] and parts[2:] and parts[2] in SUBMITS:
            return web.json_response(self._submit(parts[2], json.loads(body or b"{}")))
        if request.method == "GET" and len(parts) == 4 and parts[:2] == ["mj", "task"]:
            task = self.tasks.get(parts[2])
            if parts[3] == "fetch":
                if task is None:
                    return web.Response(status=200)  # the open-source proxy: an empty body
                task.fetches += 1
                task.advance()
                return web.json_response(task.doc())
            if parts[3] == "image-seed":
                if task is None or task.status != "SUCCESS":
                    return web.json_response(_fail(4, "task not finished"))
                return web.json_response({"code": 1, "description": "success", "result": "1234567"})
        if request.method == "POST" and path == "/mj/task/list-by-condition":
            ids = json.loads(body or b"{}").get("ids") or []
            return web.json_response([self.tasks[i].doc() for i in ids if i in self.tasks])
        return web.json_response({"error": f"no route {request.method} {path}"}, status=404)

    def _new(self, action: str, prompt: str = "", parent: str | None = None, status: str = "SUBMITTED",
             code: int = 1, description: str = "Submit success") -> dict[str, Any]:
        if self.next_ids:
            task_id = self.next_ids.pop(0)
        else:
            self._counter += 1
            task_id = f"{int(time.time() * 1000)}{self._counter:04d}{uuid.uuid4().int % 1000:03d}"
        task = FakeTask(task_id, action, prompt, status=status, parent=parent)
        task.fail_next = "FAIL" in prompt
        task.cancel_next = "CANCEL" in prompt
        self.tasks[task_id] = task
        return {"code": code, "description": description, "result": task_id,
                "properties": {"discordInstanceId": self.name}}

    def _submit(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        if self.codes:
            code, description = self.codes.pop(0)
            return _fail(code, description)
        if kind in ("imagine", "shorten"):
            if not doc.get("prompt"):
                return _fail(4, "prompt is required")
            return self._new(kind.upper(), doc["prompt"])
        if kind == "blend":
            return self._new("BLEND")
        if kind == "describe":
            return self._new("DESCRIBE")
        if kind == "modal":
            task = self.tasks.get(doc.get("taskId", ""))
            if task is None or task.status != "MODAL":
                return _fail(4, "task is not waiting for a modal")
            task.status, task.prompt = "SUBMITTED", doc.get("prompt", task.prompt)
            return {"code": 1, "description": "Submit success", "result": task.id, "properties": {}}
        if kind == "simple-change":
            task_id, _, what = str(doc.get("content", "")).partition(" ")
            action = {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}[what[:1].upper()]
            return self._change(task_id, action)
        if kind == "change":
            return self._change(doc.get("taskId", ""), doc.get("action", ""))
        parent = self.tasks.get(doc.get("taskId", ""))
        custom = str(doc.get("customId", ""))
        if parent is None or parent.hash not in custom:
            return _fail(3, "the task does not exist or the button is not its own")
        if "CustomZoom" in custom or "Inpaint" in custom:
            return self._new("MODAL", parent.prompt, parent.id, status="MODAL", code=21,
                             description="Waiting for window confirm")
        action = ("UPSCALE" if "upsample" in custom else "VARIATION" if "variation" in custom
                  else "REROLL" if "reroll" in custom else "PAN" if "pan_" in custom else "ZOOM")
        return self._new(action, parent.prompt, parent.id)

    def _change(self, task_id: str, action: str) -> dict[str, Any]:
        parent = self.tasks.get(task_id)
        if parent is None:
            return _fail(3, "the task does not exist")
        return self._new(action, parent.prompt, parent.id)


def _fail(code: int, description: str) -> dict[str, Any]:
    return {"code": code, "description": description, "result": None, "properties": {}}
