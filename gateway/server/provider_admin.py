"""`GET /admin/providers` (provider health across workers), `POST /admin/providers/{id}/test`
(a provider test in this worker; keys that pass are restored here), `GET /admin/providers/{id}/
models` (the upstream's model list against the bundle), and the provider series of /metrics.
`providers_health` is the plain-data view the console shows too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ..config.snapshot import ProviderRuntime
from ..errors import InvalidRequest, NotFound, UpstreamError
from ..ops.discover import DiscoveryError, upstream_models
from ..ops.drift import drift, listed_models, snippet
from ..ops.health import worker_document
from ..ops.health_merge import merged_health, read_documents
from ..ops.probe import probe_provider
from ..providers.wire.head import TOO_DEEP
from .auth import authenticate_admin, presented_key
from .envelope import Call, Endpoint
from .http import json_body, send_json
from .intake import read_body
from .provider_watch import passed, restore
from .state import WorkerState

PREFIX = "/admin/providers/"


def providers_health(state: WorkerState) -> dict[str, Any]:
    """Every provider's breaker and keys (benched, in flight, error rate, p50/p95), merged over
    the machine's live workers; this worker's part is taken live. Plain data (JSON-ready)."""
    snap = state.store.current
    own = worker_document(snap.providers, state.breakers.all(), state.keyrings(), state.health)
    return merged_health(snap, read_documents(Path(state.settings.data_dir), own))


async def list_providers(call: Call) -> None:
    authenticate_admin(call.snap, presented_key(call.scope))
    send_json(call.proto, 200, providers_health(call.state))


class _TestBody(msgspec.Struct, forbid_unknown_fields=True):
    model: str | None = None
    stream: bool = False


async def test_provider(call: Call) -> None:
    authenticate_admin(call.snap, presented_key(call.scope))
    provider = _provider(call, "/test")
    raw = await read_body(call.scope, call.proto, 1 << 16)
    try:
        body = msgspec.json.decode(json_body(call.scope, raw), type=_TestBody) if raw.strip() else _TestBody()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f'send {{"model": "...", "stream": false}} or nothing: {exc}') from None
    except RecursionError:
        raise InvalidRequest(TOO_DEEP) from None
    results = await probe_provider(provider, call.state.client, call.snap.redactor, model=body.model,
                                   stream=body.stream)
    ring = call.state.keyring(provider)
    for index in sorted({r.key_index for r in results}):
        if passed([r for r in results if r.key_index == index]):
            restore(call.state, provider, ring, index)
    ok = all(r.ok or r.skipped for r in results)
    send_json(call.proto, 200, {"provider": provider.id, "ok": ok, "results": [r.as_dict() for r in results]})


async def provider_models(call: Call) -> None:
    authenticate_admin(call.snap, presented_key(call.scope))
    provider = _provider(call, "/models")
    try:
        offered = await upstream_models(provider, call.state.client, call.snap.redactor)
    except DiscoveryError as exc:
        raise UpstreamError(str(exc), status=502, code="model_list_failed") from None
    d = drift(call.snap, provider, offered)
    send_json(call.proto, 200, {**d.as_dict(), "snippet": snippet(d, listed_models(provider))})


def _provider(call: Call, suffix: str) -> ProviderRuntime:
    pid = call.scope.path.removeprefix(PREFIX).removesuffix(suffix)
    provider = call.snap.providers.get(pid)
    if provider is None:
        raise NotFound(f"no provider `{pid}` in the bundle", code="provider_not_found")
    return provider


TEST = Endpoint(test_provider)
MODELS = Endpoint(provider_models)


def route(method: str, path: str) -> Endpoint | None:
    """The endpoint of `/admin/providers/{id}/test|models`, when `path` is one."""
    if not path.startswith(PREFIX):
        return None
    if method == "POST" and path.endswith("/test"):
        return TEST
    if method == "GET" and path.endswith("/models"):
        return MODELS
    return None


def metric_lines(state: WorkerState) -> list[str]:
    """Provider series for /metrics, labelled by provider and key index, never by key."""
    families: dict[str, tuple[str, list[str]]] = {
        name: (kind, []) for name, kind in (
            ("tollgate_provider_breaker_open", "gauge"), ("tollgate_provider_key_benched", "gauge"),
            ("tollgate_provider_key_in_flight", "gauge"), ("tollgate_provider_key_requests_total", "counter"),
            ("tollgate_provider_key_errors_total", "counter"), ("tollgate_provider_key_latency_ms", "gauge"))
    }

    def add(name: str, labels: str, value: object) -> None:
        families[name][1].append(f"{name}{{{labels}}} {value}")

    for p in providers_health(state)["providers"]:
        add("tollgate_provider_breaker_open", f'provider="{p["id"]}"', int(p["breaker"]["state"] != "closed"))
        for k in p["keys"]:
            labels = f'provider="{p["id"]}",key_index="{k["index"]}"'
            add("tollgate_provider_key_benched", labels, int(bool(k["benched"])))
            add("tollgate_provider_key_in_flight", labels, k["in_flight"])
            add("tollgate_provider_key_requests_total", labels, k["requests"])
            add("tollgate_provider_key_errors_total", labels, k["errors"])
            for q, field in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
                if k[field] is not None:
                    add("tollgate_provider_key_latency_ms", f'{labels},quantile="{q}"', k[field])
    lines: list[str] = []
    for name, (kind, samples) in families.items():
        lines += [f"# TYPE {name} {kind}", *samples]
    return lines
