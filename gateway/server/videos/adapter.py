"""The task engine's adapter for videos: a video task refreshed from its upstream (an OpenAI
video object, or a Veo operation mapped to one). Failed videos are refunded by the engine
(`error_type` video_refund)."""

from __future__ import annotations

import logging

from ...errors import GatewayError, NotFound
from ...tasks.adapter import Seen
from ...tasks.engine import TaskEngine
from ...tasks.store import TaskRow
from ..state import WorkerState
from ..task_upstream import read
from ..tasks import engine
from .upstream import fetch_path, seen

log = logging.getLogger("tollgate.videos")
FAMILY = "video"


class VideoTasks:
    family = FAMILY
    refund_type = "video_refund"

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def fetch(self, task: TaskRow, hint: str | None = None) -> Seen | None:
        provider = self.state.store.current.providers.get(task.provider)
        if provider is None:
            return None
        try:
            status, data = await read(self.state, provider, "GET", fetch_path(provider, task))
        except GatewayError as exc:
            log.warning("cannot refresh video %s from %s: %s", task.id, task.provider, exc.message)
            return None
        return seen(provider, task, status, data)


def runtime(state: WorkerState) -> TaskEngine:
    tasks = state.tasks
    if tasks is not None and FAMILY in tasks.adapters:
        return tasks
    return engine(state, VideoTasks(state))


def not_found(video_id: str) -> NotFound:
    return NotFound(f"video {video_id[:100]} not found", code="video_not_found", param="video_id")


async def owned_video(tasks: TaskEngine, key_id: str, video_id: str) -> TaskRow:
    """The key's video; another key's is as unknown as one that never existed."""
    task = await tasks.store.get(video_id)
    if task is None or task.key_id != key_id or task.family != FAMILY:
        raise not_found(video_id)
    return task
