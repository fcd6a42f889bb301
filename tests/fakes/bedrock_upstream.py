"""A fake AWS Bedrock runtime (`POST /model/{modelId}/converse` and `/converse-stream`) on loopback.

It VERIFIES each request's SigV4 signature with botocore on the server side (the canonical
request rebuilt from the headers the client signed, the raw path and the body; the signature
recomputed with the known secret and compared), and refuses a bad one with 403 like AWS does.
ConverseStream answers are real event-stream frames (prelude, typed headers, payload, both
CRC32s) built by a small encoder here and checked with botocore's own decoder.

Answers: a tool call when the request offers tools and its last turn is no tool result; else text
(`tool said: ...` echoing a tool result, `saw a <format> image` for an image, else
`fake answer from <model>`). Usage: 20 uncached input tokens, 5 cache reads, 3 cache writes, 7
output tokens. `stream_exception`: a stream ends with a throttlingException message;
`corrupt_crc`: its second message has a wrong CRC.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from tests.fakes.native_base import Received
from tests.fakes.threaded import ThreadedApp, wait_for

USAGE = {"inputTokens": 20, "outputTokens": 7, "totalTokens": 35, "cacheReadInputTokens": 5,
         "cacheWriteInputTokens": 3}
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "AKIAFAKEEXAMPLE12345", "fake/secret+key/EXAMPLE0123456789abcdef", ""


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes, *, bad_crc: bool = False) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC), headers, payload, CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + head + payload
    crc = binascii.crc32(body) & 0xFFFFFFFF
    return body + struct.pack("!I", crc ^ 1 if bad_crc else crc)


def event(name: str, doc: dict[str, Any]) -> bytes:
    data = frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps({**doc, "p": "abcdefgh"}).encode())  # AWS pads payloads with "p"
    decoded = list(_decode(data))  # the encoder is checked by botocore's decoder, CRCs included
    assert decoded[0].headers[":event-type"] == name and json.loads(decoded[0].payload)["p"] == "abcdefgh"
    return data


def _decode(data: bytes) -> Any:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return iter(buffer)


def exception(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


def signature_problem(request: web.Request, body: bytes, secret: str, region: str) -> str | None:
    """Why the request's SigV4 signature is not valid for `secret`, or None when it is."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 authorization header"
    fields = dict(part.strip().split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    access_key, date, scope_region, service, _ = fields["Credential"].split("/")
    if (scope_region, service) != (region, "bedrock"):
        return f"credential scope {scope_region}/{service}, expected {region}/bedrock"
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    url = f"http://{request.headers['host']}{request.raw_path}"
    again = AWSRequest(method=request.method, url=url, data=body,
                       headers={h: request.headers[h] for h in signed})
    again.context["timestamp"] = request.headers["x-amz-date"]
    token = request.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)
    return None if expected == fields["Signature"] else "signature mismatch"


def _last_tool_result(doc: dict[str, Any]) -> str | None:
    for block in (doc.get("messages") or [{}])[-1].get("content") or ():
        if "toolResult" in block:
            return "".join(c.get("text", "") for c in block["toolResult"]["content"])
    return None


def _image_format(doc: dict[str, Any]) -> str | None:
    for block in (doc.get("messages") or [{}])[-1].get("content") or ():
        if "image" in block:
            return str(block["image"]["format"])
    return None


class FakeBedrock:
    def __init__(self, region: str = "us-east-1", secret: str = SECRET_KEY) -> None:
        self.region, self.secret = region, secret
        self.received: list[Received] = []
        self.refused: list[str] = []
        self.stream_exception = False
        self.corrupt_crc = False
        self.port = 0
        self._server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeBedrock:
        self._server = ThreadedApp(self._handle)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        return wait_for(predicate, timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.raw_path, request.query_string,
                                      {k.lower(): v for k, v in request.headers.items()}, body))
        problem = signature_problem(request, body, self.secret, self.region)
        if problem is not None:
            self.refused.append(problem)
            return web.json_response({"message": f"The request signature we calculated does not match ({problem})"},
                                     status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
        parts = request.raw_path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            return web.json_response({"message": "Unknown operation"}, status=404,
                                     headers={"x-amzn-ErrorType": "UnknownOperationException"})
        doc = json.loads(body)
        if not doc.get("messages"):
            return web.json_response({"message": "messages: must have at least 1 item"}, status=400,
                                     headers={"x-amzn-ErrorType": "ValidationException"})
        model = unquote(parts[2])
        if parts[3] == "converse":
            return web.json_response(self._whole(model, doc))
        return await self._stream(request, model, doc)

    def _answer(self, model: str, doc: dict[str, Any]) -> tuple[str | None, str]:
        result = _last_tool_result(doc)
        tools = (doc.get("toolConfig") or {}).get("tools") or []
        tool = tools[0]["toolSpec"]["name"] if tools and result is None else None
        image = _image_format(doc)
        text = (f"tool said: {result}" if result is not None
                else f"saw a {image} image" if image else f"fake answer from {model}")
        return tool, text

    def _whole(self, model: str, doc: dict[str, Any]) -> dict[str, Any]:
        tool, text = self._answer(model, doc)
        content = ([{"toolUse": {"toolUseId": "tooluse_1", "name": tool, "input": {"city": "Paris"}}}]
                   if tool else [{"text": text}])
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "tool_use" if tool else "end_turn", "usage": USAGE, "metrics": {"latencyMs": 12}}

    async def _stream(self, request: web.Request, model: str, doc: dict[str, Any]) -> web.StreamResponse:
        tool, text = self._answer(model, doc)
        events = [event("messageStart", {"role": "assistant"})]
        if tool:
            events.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": {
                "toolUse": {"toolUseId": "tooluse_1", "name": tool}}}))
            for part in ('{"city": ', '"Paris"}'):
                events.append(event("contentBlockDelta", {"contentBlockIndex": 0,
                                                          "delta": {"toolUse": {"input": part}}}))
        else:
            for word in text.split(" "):
                events.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word + " "}}))
        events.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        if self.stream_exception:
            events.append(exception("throttlingException", "Too many tokens, please wait before trying again."))
        else:
            events.append(event("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
            events.append(event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 12}}))
        if self.corrupt_crc:
            events[1] = events[1][:-4] + bytes([events[1][-4] ^ 0xFF]) + events[1][-3:]
        response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        for data in events:  # split across writes: a frame may arrive in pieces
            await response.write(data[:7])
            await response.write(data[7:])
        await response.write_eof()
        return response
