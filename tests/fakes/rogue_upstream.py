"""A misbehaving OpenAI-compatible upstream on raw sockets: it can reset connections, stall
after its headers, echo the caller's credentials, or answer 200 with something that is not the
API's JSON. Behaviour is chosen by the request's `model`; every request it reads is counted
(by model), so tests can count upstream deliveries exactly.

Raw asyncio streams (no HTTP framework) because the misbehaviours are at the byte level: a
reset (RST, via SO_LINGER 0) after N events, a reset of a reused keep-alive connection right
after reading a request, headers promising a body that never comes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import struct
import threading
from typing import Any

_COMPLETION = {"id": "chatcmpl-rogue", "object": "chat.completion", "created": 1,
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "rogue answer"}}],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


def _event(model: str, text: str) -> bytes:
    doc = {"id": "chatcmpl-rogue", "object": "chat.completion.chunk", "created": 1, "model": model,
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class RogueUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.auth_seen: list[str] = []
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> RogueUpstream:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("rogue upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def reset(self) -> None:
        self.deliveries.clear()
        self.auth_seen.clear()

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0  # requests answered on this connection: >0 means a reused keep-alive one
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                headers, body = request
                doc = json.loads(body or b"{}")
                model = str(doc.get("model", ""))
                self.deliveries[model] += 1
                self.auth_seen.append(headers.get("authorization", ""))
                keep = await self._answer(model, served, headers, doc, reader, writer)
                served += 1
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _answer(self, model: str, served: int, headers: dict[str, str], doc: dict[str, Any],
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be reused."""
        if model == "reject":
            await _send(writer, 401, b'{"error": {"message": "no such key", "type": "invalid_request_error"}}')
            return True
        if model == "reset-reused" and served > 0:
            _reset(writer)  # read the request, then reset the reused connection
            return False
        if model == "head-then-reset":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"id\"")
            await writer.drain()
            _reset(writer)
            return False
        if model == "head-then-stall":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"id\"")
            await writer.drain()
            await reader.read()  # stall until the gateway gives up and closes
            return False
        if model == "html":
            await _send(writer, 200, b"<html><body>502 Bad Gateway (nginx)</body></html>", "text/html")
            return True
        if model == "bad-json":
            await _send(writer, 200, b'{"id": "x", "choices": [', "application/json")
            return True
        if model.startswith("stream-"):
            return await self._stream(model, headers, reader, writer)
        await _send(writer, 200, json.dumps({**_COMPLETION, "model": model}).encode())
        return True

    async def _stream(self, model: str, headers: dict[str, str], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for word in ("Hello", " there"):
            await _chunk(writer, _event(model, word))
        if model == "stream-reset":
            _reset(writer)
            return False
        if model == "stream-stall":
            await reader.read()  # stall until the gateway gives up and closes
            return False
        if model == "stream-echo-key":
            error = {"error": {"message": f"bad request; you sent Authorization: {headers.get('authorization')}",
                               "type": "invalid_request_error"}}
            await _chunk(writer, b"data: " + json.dumps(error).encode() + b"\n\n")
        await _chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str = "application/json") -> None:
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
                 .encode() + body)
    await writer.drain()


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
