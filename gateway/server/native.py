"""Native inbound APIs: Anthropic `POST /v1/messages` and Gemini
`POST /v1beta/models/{model}:generateContent|streamGenerateContent` (also under `/v1/models/`),
`GET /v1beta/models` (its entries: gemini_models.py); `:countTokens` is routed to its own
handler (count_tokens.py), and `:embedContent` / `:batchEmbedContents` are relayed as their own
endpoints (gemini_embeddings.py).

Each prepare function authenticates with its family's key headers, decodes the head (model,
stream, message count, max tokens) and admits the request with its client family; the relay and
the codecs do the rest. Errors go out in the family's shape.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, unquote

import msgspec

from ..config.snapshot import Snapshot
from ..errors import InvalidRequest, NotFound
from ..providers.wire.head import TOO_DEEP, Head, Tokens, decode_head
from .admission import Prepared, admit, read_request
from .auth import authenticate, presented_key
from .envelope import Call, Endpoint
from .exchange import Exchange
from .gemini_array import JsonArrayProto, wants_json_array
from .gemini_models import gemini_model
from .http import client_ip, json_body, send_json
from .rsgi import Proto, Scope
from .state import WorkerState

GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")  # v1: google-genai with api_version="v1"
GEMINI_VERBS = {"generateContent": False, "streamGenerateContent": True}  # generation: relayed
COUNT_VERB = "countTokens"  # not a generation verb: never relayed (see count_tokens.py)
EMBED_VERBS = ("embedContent", "batchEmbedContents")  # relayed, each as its own endpoint
BODY_FIELD = {"embedContent": "content", "batchEmbedContents": "requests"}  # else `contents`


async def prepare_anthropic(
    state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, x: Exchange
) -> Prepared:
    ip, key, body = await read_request(state, snap, scope, proto, x, presented_key(scope, ("x-api-key",)))
    # model, stream, messages, max_tokens, metadata: the same names as OpenAI's
    head = decode_head(json_body(scope, body))
    if head.messages is None:
        raise InvalidRequest("messages: field required", param="messages")
    usage = await state.limiter.usage(snap, key) if snap.rules.reads_usage else None
    p = admit(snap, key, head, body, "application/json", x, ip, "anthropic", usage=usage)
    beta = scope.headers.get("anthropic-beta")
    if beta and "\n" not in beta and "\r" not in beta:  # opt-in features; rules' headers still win
        p.decision = replace(p.decision, headers=(("anthropic-beta", str(beta)), *p.decision.headers))
    return p


class _GenerationConfig(msgspec.Struct):
    maxOutputTokens: Tokens | None = None


class _GeminiHead(msgspec.Struct):
    contents: list[msgspec.Raw] | None = None
    generationConfig: _GenerationConfig | None = None


_gemini_head = msgspec.json.Decoder(_GeminiHead)


def gemini_key(scope: Scope) -> str | None:
    key = presented_key(scope, ("x-goog-api-key",))
    if key:
        return key
    values = parse_qs(str(getattr(scope, "query_string", "") or "")).get("key")
    return values[0] if values else None


def gemini_target(path: str) -> tuple[str, str]:
    """(model, verb) of `/v1beta/models/{model}:{verb}`."""
    for prefix in GEMINI_PREFIXES:
        if path.startswith(prefix):
            model, _, verb = unquote(path.removeprefix(prefix)).rpartition(":")
            return model, verb
    return "", ""


async def prepare_gemini(
    state: WorkerState, snap: Snapshot, scope: Scope, proto: Proto, x: Exchange
) -> Prepared:
    model, verb = gemini_target(scope.path)
    ip, key, body = await read_request(state, snap, scope, proto, x, gemini_key(scope))
    json_body(scope, body)
    if not body:
        field = BODY_FIELD.get(verb, "contents")
        raise InvalidRequest(f"the request body is empty; send a JSON object with `{field}`", param=field)
    try:
        doc = _gemini_head.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except RecursionError:  # msgspec on absurdly nested JSON
        raise InvalidRequest(TOO_DEEP) from None
    config = doc.generationConfig
    head = Head(model=model, stream=GEMINI_VERBS.get(verb, False), messages=doc.contents or [],
                max_tokens=config.maxOutputTokens if config else None)
    usage = await state.limiter.usage(snap, key) if snap.rules.reads_usage else None
    return admit(snap, key, head, body, "application/json", x, ip, "gemini", usage=usage)


async def list_gemini_models(call: Call) -> None:
    snap, scope = call.snap, call.scope
    key = authenticate(snap, gemini_key(scope), client_ip(scope, call.state.settings.trust_forwarded))
    if scope.path.rstrip("/") == "/v1beta/models":
        send_json(call.proto, 200, {"models": [gemini_model(snap, m) for m in snap.models_for(key)]})
        return
    name = unquote(scope.path.removeprefix("/v1beta/models/")).removeprefix("models/")
    if name not in snap.routes or not key.allows_model(name):
        raise NotFound(f"models/{name} is not found", code="model_not_found")
    send_json(call.proto, 200, gemini_model(snap, name))


async def _unknown_gemini_method(call: Call) -> None:
    raise NotFound(f"unknown method {call.scope.method} {call.scope.path}")


def _generating(relayed: Endpoint) -> Endpoint:
    """Generation: SSE as relayed, or the JSON array Gemini answers without `?alt=sse`."""

    async def generate(call: Call) -> None:
        if not wants_json_array(call.scope, gemini_target(call.scope.path)[1]):
            await relayed.handler(call)
            return
        array = JsonArrayProto(call.proto)
        call.proto = array
        await relayed.handler(call)
        await array.finish()

    return Endpoint(generate, relayed.family, relayed.endpoint, watch=relayed.watch)


class GeminiRoutes:
    """The Gemini paths carry the model in the path, so they are matched by prefix."""

    def __init__(self, relayed: Endpoint, count: Endpoint, embed: dict[str, Endpoint]) -> None:
        self.generate = _generating(relayed)
        self.count = count
        self.embed = embed  # verb -> route
        self.models = Endpoint(list_gemini_models, "gemini")
        self.unknown = Endpoint(_unknown_gemini_method, "gemini")

    def route(self, method: str, path: str) -> Endpoint | None:
        verb = gemini_target(path)[1]
        if method == "POST" and verb == COUNT_VERB:
            return self.count
        if method == "POST" and (embed := self.embed.get(verb)) is not None:
            return embed
        if path.startswith("/v1/models/"):  # GET /v1/models/{id} is OpenAI's
            return self.generate if method == "POST" and verb in GEMINI_VERBS else None
        if not path.startswith("/v1beta/models"):
            return None
        if method == "GET":
            return self.models
        if method == "POST" and verb in GEMINI_VERBS:
            return self.generate
        return self.unknown
