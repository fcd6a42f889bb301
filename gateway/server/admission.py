"""Admission of a client request, before any upstream is called: authenticate, then read,
decode the fields the gateway needs, check the key's model allow-list, evaluate the rules,
resolve the route. Shared by every client format (OpenAI here; Anthropic and Gemini natively).
(docs/architecture.md, "The request path", step 5)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.snapshot import KeyRuntime, Route, Snapshot
from ..errors import InvalidRequest, NotFound, PermissionDenied
from ..policy.context import Facts, KeyView, RequestView, UsageView
from ..policy.rules import Decision, RuleFailed
from ..providers.wire.head import Head, decode_head, form_head
from ..routing.affinity import affinity_key
from .auth import check_model, presented_key
from .exchange import Exchange
from .forms import check_form
from .http import JSON, client_ip, json_body
from .intake import authenticate_request, read_body
from .rsgi import Proto, Scope
from .state import WorkerState

MULTIPART_ENDPOINTS = frozenset({"audio/transcriptions", "audio/translations"})
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "cookie"})


@dataclass(slots=True)
class Prepared:
    """A request admitted by auth and rules, in the client's format `client_family`."""

    key: KeyRuntime
    head: Head
    body: bytes
    content_type: str
    route: Route
    decision: Decision
    client_family: str = "openai"
    extra_headers: list[tuple[str, str]] | None = None  # e.g. x-ratelimit-* from the limiter

    # An explicit __init__: compiled, the dataclass-made one runs as Python (docs/architecture.md)
    def __init__(self, key: KeyRuntime, head: Head, body: bytes, content_type: str, route: Route,
                 decision: Decision, client_family: str = "openai",
                 extra_headers: list[tuple[str, str]] | None = None) -> None:
        self.key = key
        self.head = head
        self.body = body
        self.content_type = content_type
        self.route = route
        self.decision = decision
        self.client_family = client_family
        self.extra_headers = extra_headers


async def read_request(
    state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, x: Exchange, secret: str | None
) -> tuple[str, KeyRuntime, bytes]:
    """(client address, key, body): the key is checked before any of the body is read."""
    ip = client_ip(scope, state.settings.trust_forwarded)
    key = authenticate_request(snap, secret, ip, x)
    body = await read_body(scope, proto, snap.settings.max_body_bytes, state.settings.body_timeout_s)
    x.body_bytes = len(body)
    return ip, key, body


async def prepare(state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, x: Exchange) -> Prepared:
    """An OpenAI-format request: authenticate, read, decode the head, admit."""
    ip, key, body = await read_request(state, snap, scope, proto, x, presented_key(scope))
    content_type = str(scope.headers.get("content-type") or "")
    if x.endpoint in MULTIPART_ENDPOINTS:
        check_form(content_type, body)
        head = form_head(body)
    else:
        head = decode_head(json_body(scope, body))
        content_type = JSON  # whatever lenient type the client sent, the body is JSON
    # `usage` for rules: a store call, made only when a rule reads it
    usage = await state.limiter.usage(snap, key) if snap.rules.reads_usage else None
    return admit(snap, key, head, body, content_type, x, ip, "openai", usage=usage)


def admit(
    snap: Snapshot,
    key: KeyRuntime,
    head: Head,
    body: bytes,
    content_type: str,
    x: Exchange,
    ip: str,
    client_family: str,
    *,
    usage: UsageView | None = None,
) -> Prepared:
    """Model allow-list, rules and route resolution; shared by every client format."""
    if not head.model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    x.requested_model, x.stream = head.model, head.stream
    check_model(key, head.model)
    decision = decide(snap, key, head, x.endpoint, ip, usage=usage)
    x.tags = key.tags + tuple(t for t in decision.tags if t not in key.tags)
    name = decision.route or decision.set_model or head.model
    route = snap.routes.get(name)
    if route is None:
        raise NotFound(
            f"the model `{head.model}` does not exist on this gateway", code="model_not_found", param="model"
        )
    return Prepared(
        key=key,
        head=head,
        body=body,
        content_type=content_type,
        route=route,
        decision=decision,
        client_family=client_family,
    )


def estimate_tokens(p: Prepared) -> int:
    """Tokens to reserve before the call: the prompt (~4 bytes a token) and the output cap."""
    return len(p.body) // 4 + p.head.token_limit


def affinity_of(p: Prepared, x: Exchange, scope: Scope, trust_forwarded: bool) -> str | None:
    """The hashed affinity value (routing/affinity.py) of a request admitted to an alias that
    declares `affinity`; its expression sees the request (headers included, credentials not)
    and the key."""
    assert p.route.affinity is not None
    request = request_view(p.head, x.endpoint, client_ip(scope, trust_forwarded))
    headers: Any = scope.headers  # granian's headers: a mapping with items()
    request.headers = {k.lower(): v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    facts = Facts(request, KeyView(p.key.id, p.key.group.id if p.key.group else "", list(p.key.tags)))
    return affinity_key(p.route.affinity, facts.lookup)


def request_view(head: Head, endpoint: str, ip: str) -> RequestView:
    return RequestView(
        model=head.model or "",
        endpoint=endpoint,
        stream=head.stream,
        message_count=len(head.messages) if head.messages is not None else 0,
        max_tokens=head.token_limit,
        metadata=head.metadata or {},
        ip=ip,
    )


def decide(
    snap: Snapshot, key: KeyRuntime, head: Head, endpoint: str, ip: str, *, usage: UsageView | None = None
) -> Decision:
    request = request_view(head, endpoint, ip)
    facts = Facts(request, KeyView(key.id, key.group.id if key.group else "", list(key.tags)), usage)
    try:
        decision = snap.rules.evaluate(facts.lookup)
    except RuleFailed as exc:
        raise PermissionDenied(
            f"request refused: policy rule {exc.rule_id!r} failed to evaluate ({exc.message})",
            code="policy_rule_error",
        ) from None
    if decision.deny is not None:
        raise PermissionDenied(decision.deny, code="denied_by_rule")
    return decision
