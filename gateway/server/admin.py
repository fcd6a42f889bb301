"""Non-relay endpoints: model listing, health, metrics, policy status, admin usage queries.
Handlers of the one envelope (envelope.py): they answer or raise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ..config.snapshot import KeyRuntime
from ..errors import InvalidRequest, NotFound, UpstreamError
from ..providers.wire.head import TOO_DEEP
from ..usage.claim import read_problem
from . import provider_admin
from .auth import authenticate, authenticate_admin, presented_key
from .envelope import Call
from .http import client_ip, json_body, send_json
from .intake import read_body
from .state import WorkerState


def _model_entry(state: WorkerState, name: str) -> dict[str, Any]:
    route = state.store.current.routes[name]
    owner = "tollgate" if route.is_alias else route.tiers[0][0].provider if route.tiers else "tollgate"
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def _anthropic_entry(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}


def _is_anthropic(call: Call) -> bool:
    """The Anthropic SDK (and Claude Code) send `anthropic-version` on every call."""
    if call.scope.headers.get("anthropic-version"):
        call.family = "anthropic"  # its errors too
        return True
    return False


def _key(call: Call) -> KeyRuntime:
    secret = presented_key(call.scope, ("x-api-key",))
    return authenticate(call.snap, secret, client_ip(call.scope, call.state.settings.trust_forwarded))


async def list_models(call: Call) -> None:
    """OpenAI's list, or Anthropic's for an Anthropic client: both call `GET /v1/models`."""
    anthropic = _is_anthropic(call)
    names = call.snap.models_for(_key(call))
    if anthropic:
        send_json(call.proto, 200, {"data": [_anthropic_entry(n) for n in names], "has_more": False,
                                    "first_id": names[0] if names else None,
                                    "last_id": names[-1] if names else None})
        return
    send_json(call.proto, 200, {"object": "list", "data": [_model_entry(call.state, n) for n in names]})


async def retrieve_model(call: Call) -> None:
    """`GET /v1/models/{id}`."""
    anthropic = _is_anthropic(call)
    key = _key(call)
    name = call.scope.path.removeprefix("/v1/models/")
    if name not in call.snap.routes or not key.allows_model(name):
        raise NotFound(f"the model `{name}` does not exist", code="model_not_found", param="model")
    send_json(call.proto, 200, _anthropic_entry(name) if anthropic else _model_entry(call.state, name))


async def healthz(call: Call) -> None:
    send_json(call.proto, 200, {"status": "ok"})


def _parquet_problem(state: WorkerState) -> dict[str, Any] | None:
    """The usage Parquet exporter's refusal (another live gateway has this node id), if any."""
    settings = state.settings
    if not settings.ledger or settings.usage_parquet_dir is None:
        return None
    return read_problem(Path(settings.data_dir))


async def readyz(call: Call) -> None:
    state, proto = call.state, call.proto
    if state.draining:
        send_json(proto, 503, {"status": "draining"})
        return
    body: dict[str, Any] = {"status": "ready", "revision": state.store.current.revision}
    problem = _parquet_problem(state)
    if problem is not None:  # still serving and recording usage: ready, with the problem named
        body["usage_parquet"] = problem
    send_json(proto, 200, body)


async def metrics(call: Call) -> None:
    state, proto = call.state, call.proto
    lines = ["# TYPE tollgate_requests_total counter"]
    for (endpoint, status), count in sorted(state.counters.items()):
        lines.append(f'tollgate_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}')
    lines += [
        "# TYPE tollgate_policy_reloads_total counter",
        f"tollgate_policy_reloads_total {state.store.reloads}",
        "# TYPE tollgate_policy_error gauge",
        f"tollgate_policy_error {1 if state.store.last_error else 0}",
        "# TYPE tollgate_upstream_open gauge",
    ]
    for provider, breaker_state in sorted(state.breakers.states().items()):
        lines.append(
            f'tollgate_upstream_open{{provider="{provider}"}} {0 if breaker_state == "closed" else 1}'
        )
    if state.settings.usage_parquet_dir is not None:  # 1: another live gateway has this node_id
        conflict = 1 if _parquet_problem(state) else 0
        lines += ["# TYPE tollgate_usage_parquet_conflict gauge",
                  f"tollgate_usage_parquet_conflict {conflict}"]
    lines += provider_admin.metric_lines(state)  # breakers, benched keys, latency per key
    body = ("\n".join(lines) + "\n").encode()
    proto.response_bytes(200, [("content-type", "text/plain; version=0.0.4")], body)


async def policy_status(call: Call) -> None:
    state, proto, store, snap = call.state, call.proto, call.state.store, call.snap
    authenticate_admin(snap, presented_key(call.scope))
    send_json(
        proto,
        200,
        {
            "revision": snap.revision,
            "loaded_at": snap.loaded_at.isoformat(),
            "directory": snap.directory,
            "reloads": store.reloads,
            "last_error": [str(p) for p in store.last_error] or None,
            "last_error_at": store.last_error_at.isoformat() if store.last_error_at else None,
            "providers": sorted(snap.providers),
            "models": sorted(snap.routes),
            "keys": len(snap.keys_by_hash),
            "rules": [r.id for r in snap.rules.rules],
            "usage_parquet": _parquet_status(state),
        },
    )


def _parquet_status(state: WorkerState) -> dict[str, Any] | None:
    settings = state.settings
    if settings.usage_parquet_dir is None:
        return None
    problem = _parquet_problem(state)
    return {
        "dir": str(settings.usage_parquet_dir),
        "node_id": settings.node_id,
        "status": "ok" if problem is None else problem.get("status", "node_id_conflict"),
        "problem": problem,
    }


class _Query(msgspec.Struct):
    sql: str


async def usage_query(call: Call) -> None:
    """One read-only SELECT on the ledger; what makes it read-only: usage/readonly_query.py."""
    state, scope, proto = call.state, call.scope, call.proto
    authenticate_admin(call.snap, presented_key(scope))
    body = json_body(scope, await read_body(scope, proto, 1 << 20))
    try:
        query = msgspec.json.decode(body, type=_Query)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f'send {{"sql": "SELECT ..."}}: {exc}', param="sql") from None
    except RecursionError:  # msgspec on absurdly nested JSON (even in a field it skips): bad input
        raise InvalidRequest(f'{TOO_DEEP}: send {{"sql": "SELECT ..."}}', param="sql") from None
    run = getattr(state.recorder, "query", None)
    if run is None:
        raise UpstreamError(
            "the usage ledger is not enabled on this gateway", status=503, code="ledger_unavailable"
        )
    send_json(proto, 200, await run(query.sql))
