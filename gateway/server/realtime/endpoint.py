"""The Realtime API's entry points: `serve_ws`, which the app calls for every WebSocket upgrade
(`scope.proto == "ws"`), and the HTTP side of `/v1/realtime` (a plain GET is told to upgrade).

A session is admitted and its upstream opened before the client's upgrade is accepted, so a
refusal is an HTTP status (granian's RSGI sends it without a body: 401 key, 403 access, 404
model, 429 limits, 502/503/504 upstream), recorded as a usage row like any refused request."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from granian._granian import RSGIProtocolError as ProtocolError

from ...config.snapshot import Snapshot
from ...errors import ClientError, GatewayError
from ..envelope import Call
from ..exchange import Exchange, new_request_id
from ..rsgi import Scope, WebsocketProto
from ..state import WorkerState
from .client_secrets import CLIENT_SECRETS
from .connect import ENDPOINT, Session, admit_session

log = logging.getLogger("tollgate.realtime")
PATH = "/v1/realtime"
__all__ = ["CLIENT_SECRETS", "http_get", "serve_ws"]


class UpgradeRequired(ClientError):
    status = 426
    code = "websocket_required"


@dataclass(frozen=True, slots=True)
class _Nothing:
    """What settling a session's admission reads: its responses were charged as they came."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal | None = None


async def http_get(call: Call) -> None:
    """GET /v1/realtime without an upgrade: say how to connect (OpenAI's error shape)."""
    raise UpgradeRequired(
        "the Realtime API is a WebSocket: connect to ws(s)://<gateway>/v1/realtime?model=<model> "
        "with `Authorization: Bearer <key>`", headers=(("upgrade", "websocket"),))


async def serve_ws(state: WorkerState, scope: Scope, proto: WebsocketProto) -> None:
    """One WebSocket connection, from admission to the end of its relay."""
    if scope.path != PATH:
        proto.close(404)
        return
    # The relay needs the websockets library: loaded with the first session, not by every worker.
    from .session import Relay
    from .upstream import open_upstream

    snap = state.store.current
    x = Exchange(ENDPOINT)
    x.stream = True
    session: Session | None = None
    try:
        session = await admit_session(state, snap, scope, x)
        upstream, target = await open_upstream(state, snap, scope, session, x)
    except GatewayError as err:
        _refuse(state, snap, x, err, proto)
        if session is not None:
            await state.limiter.settle(session.admission, _Nothing())
        return
    try:
        transport = await proto.accept()
        session_id = new_request_id().replace("req_", "rts_", 1)
        await Relay(state, session, session_id, transport, upstream, target).run()
    except ProtocolError:
        pass  # the client left before the upgrade completed
    except Exception:
        log.exception("realtime session failed")
        await upstream.close(1011, "gateway error")
    finally:
        # a no-op after a relay's own close; here for the other ways out (the worker stopping)
        await upstream.close(1001, "going away")
        await state.limiter.settle(session.admission, _Nothing())
        proto.close()


def _refuse(state: WorkerState, snap: Snapshot, x: Exchange, err: GatewayError,
            proto: WebsocketProto) -> None:
    x.fail(err)
    state.count(ENDPOINT, x.status)
    state.recorder.record(x.to_record(snap))
    log.info("realtime session refused: %s %s", err.status, err.message)
    proto.close(err.status)
