"""Suno through a suno-api compatible service, in New API's task dialect (the same paths the
gateway serves): `POST /suno/submit/music|lyrics` -> `{"code": "success", "message", "data":
<task id>}`; `GET /suno/fetch/{id}` -> `{"code": "success", "data": <task>}` and `POST
/suno/fetch {"ids": [...]}` -> `{"code": "success", "data": [<task>...]}`, a task being
`{"task_id", "action": MUSIC|LYRICS, "status": NOT_START|SUBMITTED|QUEUED|IN_PROGRESS|SUCCESS|
FAILURE, "fail_reason", "submit_time", "finish_time", "progress", "data"}`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

ACTIONS = {"music": "suno_music", "lyrics": "suno_lyrics"}  # submit path -> billed action
FINISHED = frozenset({"SUCCESS", "FAILURE"})
STATUSES = frozenset({"NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE", "UNKNOWN"})
DEFAULT_MODEL = "suno"  # the model (or alias) Suno submits are routed as, unless `mv` names one


class Music(msgspec.Struct):
    """What the gateway reads of a music submit (the body is forwarded as sent)."""

    prompt: str = ""
    gpt_description_prompt: str = ""
    mv: str = ""
    title: str = ""
    tags: str = ""
    continue_clip_id: str | None = None
    task_id: str | None = None  # continue a task of this key (New API's field)


class Lyrics(msgspec.Struct):
    prompt: str = ""


class Ids(msgspec.Struct):
    ids: list[str] = []


class Submitted(msgspec.Struct):
    code: str | int = ""
    message: str = ""
    data: str | None = None


class TaskState(msgspec.Struct):
    task_id: str = ""
    status: str = ""


class Fetched(msgspec.Struct):
    code: str | int = ""
    data: TaskState | None = None


def submit_path(action: str) -> str:
    return f"suno/submit/{action}"


def fetch_path(upstream_id: str) -> str:
    return f"suno/fetch/{quote(upstream_id, safe='')}"


def decode_submitted(data: bytes) -> Submitted | None:
    try:
        return msgspec.json.decode(data, type=Submitted)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def decode_task(data: bytes) -> tuple[TaskState, dict[str, Any]] | None:
    """The task of a `GET /suno/fetch/{id}` answer: its state and the whole task object."""
    try:
        fetched = msgspec.json.decode(data, type=Fetched)
        whole: dict[str, Any] = msgspec.json.decode(data)["data"]
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, KeyError, TypeError):
        return None
    if fetched.data is None or fetched.data.status not in STATUSES or not isinstance(whole, dict):
        return None
    return fetched.data, whole


def task_doc(task_id: str, fields: dict[str, Any]) -> bytes:
    """A task object under the gateway's id."""
    return msgspec.json.encode({**fields, "task_id": task_id})
