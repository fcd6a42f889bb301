"""A fake Gemini API (`POST /v1beta/models/{model}:generateContent`,
`:streamGenerateContent?alt=sse` and `:countTokens`) on loopback.

It answers with a functionCall (with a thought signature) when the request declares functions
and its last turn holds no functionResponse, else with text (echoing a function response when
there is one); like Gemini 3 it refuses a history whose function calls lost their signature. Streamed
chunks are CRLF-framed like the real service, each with cumulative usageMetadata.
Usage: 21 prompt tokens (4 cached), 6 candidate tokens, 2 thought tokens.
countTokens answers `{"totalTokens": COUNT}` (or fails with `count_status` when it is not 200).
`:embedContent` / `:batchEmbedContents` answer a vector per content (`embed_values`), no usage,
and refuse a request whose `model` is not the one in the path, as Gemini does.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from tests.fakes.native_base import FakeServer

SIGNATURE = "+/+/ECA="  # standard base64 with every character the tool call id must re-encode
USAGE = {"promptTokenCount": 21, "candidatesTokenCount": 6, "cachedContentTokenCount": 4,
         "thoughtsTokenCount": 2, "totalTokenCount": 29}
COUNT = 2424


def _bytes(signature: str | None) -> bytes | None:
    """A signature is protobuf bytes: either base64 alphabet is accepted (google-genai sends urlsafe)."""
    return base64.urlsafe_b64decode(signature.replace("+", "-").replace("/", "_")) if signature else None


def _unsigned_call(doc: dict[str, Any]) -> bool:
    """Like Gemini 3: a function call of the model's in the history must carry its signature."""
    return any("functionCall" in part and _bytes(part.get("thoughtSignature")) != _bytes(SIGNATURE)
               for content in doc.get("contents") or () if content.get("role") == "model"
               for part in content.get("parts") or ())


def embed_values(text: str, dims: int | None) -> list[float]:
    """The fake's embedding of `text`: `dims` (default 4) values from len(text) up in steps of 0.5."""
    return [len(text) + 0.5 * k for k in range(dims or 4)]


def _embedding(request: dict[str, Any]) -> dict[str, Any]:
    text = "\n".join(p.get("text", "") for p in (request.get("content") or {}).get("parts") or ())
    return {"values": embed_values(text, request.get("outputDimensionality"))}


def _function_response(doc: dict[str, Any]) -> Any:
    last = (doc.get("contents") or [{}])[-1]
    for part in last.get("parts") or ():
        if "functionResponse" in part:
            return part["functionResponse"]["response"]
    return None


class FakeGemini(FakeServer):
    key_header = "x-goog-api-key"
    count_status = 200

    def count_tokens(self, doc: dict[str, Any]) -> web.Response:
        if self.count_status != 200:
            return web.json_response({"error": {"code": self.count_status, "message": "count failed",
                                                "status": "INTERNAL"}}, status=self.count_status)
        if not isinstance(doc.get("contents") or doc.get("generateContentRequest"), list | dict):
            return web.json_response({"error": {"code": 400, "message": "contents required",
                                                "status": "INVALID_ARGUMENT"}}, status=400)
        return web.json_response({"totalTokens": COUNT})

    def embed(self, name: str, verb: str, doc: dict[str, Any]) -> web.Response:
        requests = [doc] if verb == "embedContent" else doc.get("requests") or []
        if not requests or any(r.get("model", f"models/{name}") != f"models/{name}" for r in requests):
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                "each request's model must be the model in the path"}},
                                     status=400)
        if verb == "embedContent":
            return web.json_response({"embedding": _embedding(doc)})
        return web.json_response({"embeddings": [_embedding(r) for r in requests]})

    def refuse(self) -> web.Response:
        return web.json_response({"error": {"code": 400, "message": "API key not valid.",
                                            "status": "INVALID_ARGUMENT"}}, status=400)

    async def answer(self, request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        name, _, verb = request.path.removeprefix("/v1beta/models/").rpartition(":")
        if verb == "countTokens":
            return self.count_tokens(doc)
        if verb in ("embedContent", "batchEmbedContents"):
            return self.embed(name, verb, doc)
        if verb not in ("generateContent", "streamGenerateContent"):
            return web.json_response({"error": {"code": 404, "message": "bad path", "status": "NOT_FOUND"}},
                                     status=404)
        if _unsigned_call(doc):
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                "Function call is missing a thought_signature"}}, status=400)
        result = _function_response(doc)
        decls = [d for t in doc.get("tools") or () for d in t.get("functionDeclarations") or ()]
        tool = decls[0]["name"] if decls and result is None else None
        text = f"tool said: {json.dumps(result)}" if result is not None else f"fake answer from {name}"
        base = {"modelVersion": name, "responseId": "resp-fake"}
        if tool:
            parts: list[list[dict[str, Any]]] = [[{"functionCall": {"name": tool, "args": {"city": "Paris"}},
                                                       "thoughtSignature": SIGNATURE}]]
        else:
            words = text.split(" ")
            parts = [[{"text": w + " "}] for w in words]
        if verb == "generateContent":
            whole = [p for chunk in parts for p in chunk]
            if not tool:
                whole = [{"text": text}]
            return web.json_response({**base, "usageMetadata": USAGE, "candidates": [
                {"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": whole}}]})
        if request.query.get("alt") != "sse":
            return web.json_response({"error": {"code": 400, "message": "this fake only streams SSE",
                                                "status": "INVALID_ARGUMENT"}}, status=400)
        events = []
        for i, chunk in enumerate(parts):
            cand: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": chunk}}
            if i == len(parts) - 1:
                cand["finishReason"] = "STOP"
            usage = {**USAGE, "candidatesTokenCount": i + 1}
            if i == len(parts) - 1:
                usage = USAGE
            events.append(f"data: {json.dumps({**base, 'candidates': [cand], 'usageMetadata': usage})}\r\n\r\n"
                          .encode())
        return await self.send_events(request, events)
