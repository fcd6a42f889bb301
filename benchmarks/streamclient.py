"""A small bounded streaming load client: N keep-alive connections, each sending one SSE request
after another, measuring per stream the time to the first event (TTFB) and to the end.

It also tells whether events are coalesced on the way: for every read that carries events it
counts the `data:` lines, so with a paced upstream (one event every few ms) a faithful proxy
shows one event per read, and the largest gap between two reads shows a Nagle stall (~40 ms).

Bounded in time (`--duration`, then `--grace` for streams in flight) and in count
(`--max-streams`); only loopback URLs are accepted. Prints one JSON object on stdout.

Run: python -m benchmarks.streamclient --url http://127.0.0.1:9100/v1/chat/completions \
        --body '{"model":"bench","stream":true,"messages":[]}' --concurrency 16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Stats:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    max_gap: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    with_usage: int = 0
    with_done: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


class Client:
    def __init__(self, host: str, port: int, request: bytes, concurrency: int, duration: float,
                 grace: float, max_streams: int, stagger: float = 0.0) -> None:
        self.host, self.port, self.request = host, port, request
        self.stagger = stagger  # seconds between the connections' first requests
        self.concurrency = concurrency
        self.duration, self.grace, self.max_streams = duration, grace, max_streams
        self.stats = Stats()
        self.started = 0
        self.deadline = 0.0
        self.t_start = 0.0
        self.t_last = 0.0
        self.open = 0
        self.all_done: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def may_start(self) -> bool:
        return self.started < self.max_streams and time.perf_counter() < self.deadline

    async def run(self) -> dict[str, object]:
        self.loop = asyncio.get_running_loop()
        self.all_done = self.loop.create_future()
        self.t_start = time.perf_counter()
        self.t_last = self.t_start
        self.deadline = self.t_start + self.duration
        for i in range(self.concurrency):
            if self.stagger > 0 and i > 0:
                self.open += 1  # counted now so an early finish does not end the run
                self.loop.call_later(i * self.stagger, self.delayed_connect)
            else:
                self.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self.all_done), self.duration + self.grace)
        except TimeoutError:
            self.stats.error("streams still open after the grace period")
        return self.summary()

    def connect(self) -> None:
        if not self.may_start():
            self.check_done()
            return
        assert self.loop is not None
        self.open += 1
        task = self.loop.create_task(self.loop.create_connection(lambda: Conn(self), self.host, self.port))
        task.add_done_callback(self.connected)

    def delayed_connect(self) -> None:
        self.open -= 1
        self.connect()

    def connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.open -= 1
            self.stats.error(f"connect: {task.exception()!r}")
            assert self.loop is not None
            self.loop.call_later(0.05, self.connect)  # bounded by the deadline in may_start

    def closed(self, reconnect: bool) -> None:
        self.open -= 1
        if reconnect:
            self.connect()
        else:
            self.check_done()

    def check_done(self) -> None:
        if self.open <= 0 and self.all_done is not None and not self.all_done.done():
            self.all_done.set_result(None)

    def summary(self) -> dict[str, object]:
        s = self.stats
        n = len(s.total)
        elapsed = max(self.t_last - self.t_start, 1e-9)

        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        reads = sum(s.reads)
        return {
            "streams": n,
            "elapsed_s": round(elapsed, 3),
            "streams_per_s": round(n / elapsed, 1),
            "ttfb_p50_ms": pct(s.ttfb, 0.5),
            "ttfb_p99_ms": pct(s.ttfb, 0.99),
            "total_p50_ms": pct(s.total, 0.5),
            "total_p99_ms": pct(s.total, 0.99),
            "events_per_stream": statistics.median(s.events) if s.events else None,
            "reads_per_stream": statistics.median(s.reads) if s.reads else None,
            "events_per_read": round(sum(s.events) / reads, 3) if reads else None,
            "max_gap_ms": round(max(s.max_gap) * 1000, 2) if s.max_gap else None,
            "gap_p99_ms": pct(s.max_gap, 0.99),
            "usage_fraction": round(s.with_usage / n, 3) if n else None,
            "done_fraction": round(s.with_done / n, 3) if n else None,
            "statuses": {str(k): v for k, v in sorted(s.statuses.items())},
            "errors": s.errors,
            "error_samples": s.error_samples,
        }


class Conn(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.reset()
        self.finished_cleanly = False

    def reset(self) -> None:
        self.head_buf = b""
        self.in_body = False
        self.status = 0
        self.chunked = False
        self.length: int | None = None
        self.close_after = False
        self.received = 0
        self.tail = b""
        self.t0 = 0.0
        self.t_first = 0.0
        self.t_prev = 0.0
        self.gap = 0.0
        self.events = 0
        self.reads = 0
        self.usage = False
        self.done_marker = False
        self.error_body = b""
        self.active = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def send(self) -> None:
        if self.transport is None:
            return
        if not self.client.may_start():
            self.finished_cleanly = True
            self.transport.close()
            return
        self.client.started += 1
        self.reset()
        self.active = True
        self.t0 = time.perf_counter()
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.in_body:
            self.head_buf += data
            end = self.head_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.head_buf[:end].lower()
            data = self.head_buf[end + 4:]
            self.head_buf = b""
            self.in_body = True
            try:
                self.status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = 0
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                self.length = int(head[i + 17: j if j >= 0 else len(head)].strip())
            self.close_after = b"\r\nconnection: close" in head
            if self.length == 0:
                self.complete(now)
                return
            if not data:
                return
        self.body(data, now)

    def body(self, data: bytes, now: float) -> None:
        self.received += len(data)
        if self.status != 200 and len(self.error_body) < 300:
            self.error_body += data[:300]
        events = data.count(b"data:")
        if events:
            if self.reads == 0:
                self.t_first = now
            else:
                self.gap = max(self.gap, now - self.t_prev)
            self.t_prev = now
            self.reads += 1
            self.events += events
            if not self.usage and b'"prompt_tokens"' in data:
                self.usage = True
            if not self.done_marker and b"[DONE]" in data:
                self.done_marker = True
        if self.chunked:
            self.tail = (self.tail + data)[-7:]
            if self.tail.endswith(b"\r\n0\r\n\r\n") or (self.received == 5 and self.tail == b"0\r\n\r\n"):
                self.complete(now)
        elif self.length is not None and self.received >= self.length:
            self.complete(now)

    def complete(self, now: float) -> None:
        self.active = False
        s = self.client.stats
        s.statuses[self.status] = s.statuses.get(self.status, 0) + 1
        if self.status == 200 and self.events:
            s.ttfb.append(self.t_first - self.t0)
            s.total.append(now - self.t0)
            s.events.append(self.events)
            s.reads.append(self.reads)
            s.max_gap.append(self.gap)
            s.with_usage += self.usage
            s.with_done += self.done_marker
        else:
            s.error(f"status {self.status}: {self.error_body.decode(errors='replace')}")
        self.client.t_last = now
        if self.close_after and self.transport is not None:
            self.transport.close()
            return
        self.send()

    def eof_received(self) -> bool | None:
        if self.active and self.in_body and self.length is None and not self.chunked:
            self.complete(time.perf_counter())  # close-delimited body
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.active:
            self.client.stats.error(f"connection lost mid-stream: {exc!r}")
        self.client.closed(reconnect=not self.finished_cleanly)


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in LOOPBACK:
        raise SystemExit(f"only http://127.0.0.1 targets are allowed, not {url}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json",
             "accept: text/event-stream", f"content-length: {len(body)}"]
    lines += headers
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="JSON request body")
    parser.add_argument("--header", action="append", default=[], help="'name: value', repeatable")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds during which streams start")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds allowed to finish open streams")
    parser.add_argument("--max-streams", type=int, default=1_000_000)
    parser.add_argument("--stagger-ms", type=float, default=0.0,
                        help="delay between the connections' first requests (spreads arrivals: no burst)")
    args = parser.parse_args(argv)
    host, port, request = build_request(args.url, args.body.encode(), args.header)
    client = Client(host, port, request, max(1, args.concurrency), max(0.1, args.duration),
                    max(0.5, args.grace), max(1, args.max_streams), max(0.0, args.stagger_ms) / 1000)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(client.run())
    else:
        result = uvloop.run(client.run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
