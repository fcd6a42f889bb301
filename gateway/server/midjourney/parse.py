"""The bodies of `POST /mj/submit/*`: each endpoint's fields, checked, and the action it bills."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec

from ...errors import InvalidRequest
from ...midjourney.actions import (
    BadAction,
    change_action,
    custom_id_action,
    endpoint_action,
    parse_simple_change,
)
from ...providers.wire import midjourney as wire
from ...providers.wire.head import TOO_DEEP

S = TypeVar("S")


@dataclass(slots=True)
class Submit:
    action: str  # the billed action, e.g. mj_upscale
    task_ref: str | None = None  # the client's id of the task acted on (follow-ups)
    rest: str = ""  # simple-change: what follows the task id, e.g. "U1"
    prompt: str = ""


def _decode(body: bytes, kind: type[S]) -> S:
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except RecursionError:  # msgspec on absurdly nested JSON
        raise InvalidRequest(TOO_DEEP) from None


def parse(endpoint: str, body: bytes) -> Submit:
    try:
        return _parse(endpoint, body)
    except BadAction as exc:
        raise InvalidRequest(str(exc)) from None


def _parse(endpoint: str, body: bytes) -> Submit:
    if endpoint in ("imagine", "shorten"):
        prompt = _decode(body, wire.Imagine).prompt
        if not prompt.strip():
            raise InvalidRequest("prompt is required", param="prompt")
        return Submit(endpoint_action(endpoint), prompt=prompt)
    if endpoint == "blend":
        if not 2 <= len(_decode(body, wire.Blend).base64Array) <= 5:
            raise InvalidRequest("base64Array needs 2 to 5 images", param="base64Array")
        return Submit("mj_blend")
    if endpoint == "describe":
        describe = _decode(body, wire.Describe)
        if not (describe.base64 or describe.link):
            raise InvalidRequest("base64 (or link) is required", param="base64")
        return Submit("mj_describe")
    if endpoint == "action":
        act = _decode(body, wire.Action)
        _require_task(act.taskId)
        return Submit(custom_id_action(act.customId), act.taskId)
    if endpoint == "change":
        change = _decode(body, wire.Change)
        _require_task(change.taskId)
        action = change_action(change.action)
        if action != "mj_reroll" and change.index not in (1, 2, 3, 4):
            raise InvalidRequest("index must be 1 to 4", param="index")
        return Submit(action, change.taskId)
    if endpoint == "simple-change":
        simple = parse_simple_change(_decode(body, wire.SimpleChange).content)
        return Submit(change_action(simple.action), simple.task_id, rest=simple.rest)
    if endpoint == "modal":
        modal = _decode(body, wire.Modal)
        _require_task(modal.taskId)
        return Submit("mj_modal", modal.taskId)
    raise InvalidRequest(f"unknown submit endpoint {endpoint}")


def _require_task(task_id: str) -> None:
    if not task_id.strip():
        raise InvalidRequest("taskId is required", param="taskId")
