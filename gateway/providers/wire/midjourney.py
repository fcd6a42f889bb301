"""Midjourney through a midjourney-proxy service (the open-source dialect and its "plus" variant):
its paths, result codes and the few fields the gateway reads (the adapter that sends the calls is
../adapters/midjourney.py; the front door is gateway/server/midjourney/).

The proxy's root is the provider's `base_url`; paths are `/mj/...`, or `/mj-{mode}/mj/...` to
pick a speed mode; the provider's api key goes in the `mj-api-secret` header. Submits answer
`{"code", "description", "result": <task id>, "properties"}` (code 1 accepted, 21 exists or waits
for a modal, 22 queued; 4 / 23 / 24 and others are refusals); task documents are relayed as the
proxy writes them, and the gateway reads only the few fields below.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

SECRET_HEADER = "mj-api-secret"
MODES = ("fast", "relax", "turbo")
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCEL"})

# submit result codes
OK, EXISTS, QUEUED = 1, 21, 22
NOT_FOUND, VALIDATION_ERROR, FAILURE, QUEUE_FULL, BANNED_PROMPT = 3, 4, 9, 23, 24
ACCEPTED = frozenset({OK, QUEUED})
CODE_NAMES = {
    NOT_FOUND: "mj_not_found",
    VALIDATION_ERROR: "mj_validation_error",
    FAILURE: "mj_failure",
    QUEUE_FULL: "mj_queue_full",
    BANNED_PROMPT: "mj_banned_prompt",
}


class SubmitResult(msgspec.Struct):
    code: int
    description: str = ""
    result: str | int | None = None
    properties: dict[str, Any] = {}

    @property
    def task_id(self) -> str | None:
        return None if self.result is None or self.result == "" else str(self.result)


class TaskState(msgspec.Struct):
    """What the gateway reads from a task document; the document itself is relayed whole."""

    id: str | int | None = None
    status: str | None = None
    action: str | None = None
    failReason: str | None = None


# Request bodies: only the fields the gateway needs to validate, route and bill.
class Imagine(msgspec.Struct):
    prompt: str = ""


class Shorten(msgspec.Struct):
    prompt: str = ""


class Blend(msgspec.Struct):
    base64Array: list[str] = []


class Describe(msgspec.Struct):
    base64: str = ""
    link: str = ""


class Action(msgspec.Struct):
    customId: str = ""
    taskId: str = ""


class Change(msgspec.Struct):
    taskId: str = ""
    action: str = ""
    index: int | None = None


class SimpleChange(msgspec.Struct):
    content: str = ""


class Modal(msgspec.Struct):
    taskId: str = ""


class ListCondition(msgspec.Struct):
    ids: list[str] = []


_raw_doc = msgspec.json.Decoder(dict[str, msgspec.Raw])
_state = msgspec.json.Decoder(TaskState)
_submit = msgspec.json.Decoder(SubmitResult)


def upstream_path(tail: str, mode: str | None) -> str:
    """`submit/imagine` -> `mj/submit/imagine`, or `mj-fast/mj/submit/imagine` in a mode."""
    return f"mj-{mode}/mj/{tail}" if mode else f"mj/{tail}"


def task_path(upstream_id: str, what: str, mode: str | None = None) -> str:
    return upstream_path(f"task/{quote(upstream_id, safe='')}/{what}", mode)


def forward_body(body: bytes, fields: dict[str, str]) -> bytes:
    """The client's body with `fields` set (task ids mapped to the upstream's) and `notifyHook`
    dropped: the proxy must not call client URLs with upstream task ids behind our back."""
    doc = _raw_doc.decode(body) if body.strip() else {}
    doc.pop("notifyHook", None)
    for name, value in fields.items():
        doc[name] = msgspec.Raw(msgspec.json.encode(value))
    return msgspec.json.encode(doc)


def decode_submit(data: bytes) -> SubmitResult | None:
    try:
        return _submit.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_state(data: bytes) -> TaskState | None:
    """A task document's state; None for anything else (the open-source proxy answers an
    unknown id with an empty body or `null`)."""
    try:
        state = _state.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return state if state.status else None


def with_id(doc: bytes, task_id: str) -> bytes:
    """A task document under the id the client knows (when the gateway namespaced it)."""
    fields = _raw_doc.decode(doc)
    fields["id"] = msgspec.Raw(msgspec.json.encode(task_id))
    return msgspec.json.encode(fields)
