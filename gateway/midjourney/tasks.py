"""Midjourney tasks live in the shared task engine (gateway/tasks/): the store, the poller and
the refunds are every family's. These names stay for the Midjourney code and its tests."""

from __future__ import annotations

from ..tasks.engine import TaskEngine
from ..tasks.store import TaskRow, TaskStore

MjRuntime = TaskEngine  # one worker's task engine, Midjourney's adapter registered on it

__all__ = ["MjRuntime", "TaskRow", "TaskStore"]
