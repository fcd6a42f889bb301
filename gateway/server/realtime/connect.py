"""Admission of a Realtime session, before the WebSocket upgrade: the same checks as an HTTP
request (key, address, model allow-list, rules, route, limits), so a refused client gets an
HTTP status and no upstream is ever opened for it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from ...billing.limits import Admission
from ...config.snapshot import KeyRuntime, Route, Snapshot
from ...errors import InvalidRequest
from ...policy.rules import Decision
from ...providers.wire.head import Head
from ..admission import admit
from ..auth import presented_key
from ..exchange import Exchange
from ..http import client_ip
from ..intake import authenticate_request
from ..rsgi import Scope
from ..state import WorkerState

ENDPOINT = "realtime"
# Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol
KEY_SUBPROTOCOL = "openai-insecure-api-key."


@dataclass(slots=True)
class Session:
    """An admitted Realtime session: who, which route, and what the limiter holds for it."""

    key: KeyRuntime
    model: str
    route: Route
    decision: Decision
    query: list[tuple[str, str]]  # the client's query, forwarded upstream (model replaced)
    admission: Admission


def subprotocol_key(scope: Scope) -> str | None:
    offered = str(scope.headers.get("sec-websocket-protocol") or "")
    for item in offered.split(","):
        item = item.strip()
        if item.startswith(KEY_SUBPROTOCOL) and len(item) > len(KEY_SUBPROTOCOL):
            return item[len(KEY_SUBPROTOCOL):]
    return None


async def admit_session(state: WorkerState, snap: Snapshot, scope: Scope, x: Exchange) -> Session:
    """The session's key and route, its limits reserved (the session holds a concurrency slot
    until it ends); raises the `GatewayError` to refuse it with."""
    ip = client_ip(scope, state.settings.trust_forwarded)
    key = authenticate_request(snap, presented_key(scope) or subprotocol_key(scope), ip, x)
    query = parse_qsl(scope.query_string, keep_blank_values=True)
    model = next((v for k, v in query if k == "model"), "")
    if not model:
        raise InvalidRequest("you must provide a model: /v1/realtime?model=...", param="model")
    usage = await state.limiter.usage(snap, key)
    p = admit(snap, key, Head(model=model), b"", "", x, ip, "openai", usage=usage)
    admission = await state.limiter.admit(snap, key, p.route.name, 0)
    return Session(key, model, p.route, p.decision, [(k, v) for k, v in query if k != "model"], admission)
