"""Request intake under abuse, against a real gateway process over real sockets: thousands of
idle and slowloris connections do not starve real requests (granian's backpressure sized by
`max_connections`, freed by `header_timeout_s`), request heads are capped (`max_header_bytes`),
and a huge chunked body is refused without being kept in memory, with or without a key (the key
is checked before the body is read, the body is read chunk by chunk up to the limit)."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.serve import connections
from gateway.serve.connections import granian_options, plan_connections
from gateway.settings import ServeSettings
from tests.gateway_process import GatewayProcess
from tests.intake_support import (
    CHAT,
    KEY,
    intake_gateway,
    open_request,
    raw_request,
    read_answer,
    rss_mb,
    worker_pids,
)

IDLE, SLOWLORIS = 2000, 500
HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 4, 2
AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
CHUNKED = {"transfer-encoding": "chunked", "content-type": "application/json"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + SLOWLORIS + 500:
        pytest.skip(f"needs {IDLE + SLOWLORIS + 500} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process's sockets, and the gateway's
    env = {"TOLLGATE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "TOLLGATE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    try:
        with intake_gateway(tmp_path_factory.mktemp("intake"), env) as gateway:
            yield gateway
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _connect_all(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


def _trickle(socks: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris: a request head that never ends, one byte per socket every half second."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    while not stop.wait(0.5):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"x")


def _timed(gw: GatewayProcess, what: str) -> tuple[Any, float]:
    """A fresh connection each time: an accepted one would be served even with the slots taken."""
    t0 = time.monotonic()
    try:
        if what == "healthz":
            status: Any = httpx.get(gw.url + "/healthz", timeout=3).status_code
        else:
            status = httpx.post(gw.url + "/v1/chat/completions", content=CHAT, headers=AUTH, timeout=3).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - t0


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_and_slowloris_connections_do_not_starve_requests(gw: GatewayProcess) -> None:
    idle = _connect_all(gw.port, IDLE)
    slow = _connect_all(gw.port, SLOWLORIS)
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(slow, stop), daemon=True)
    try:
        time.sleep(0.3)
        trickler.start()
        opened = time.monotonic()
        for _ in range(3):
            for what in ("healthz", "chat"):
                status, took = _timed(gw, what)
                assert status == 200 and took < 1.0, f"{what} under {IDLE}+{SLOWLORIS} connections: {status} in {took:.2f}s"
        # the header timeout frees every slot they hold: idle, and trickling a head that never ends
        time.sleep(max(0.0, opened + HEADER_TIMEOUT_S + 1.5 - time.monotonic()))
        assert sum(_closed_by_server(s) for s in idle) == IDLE
        assert sum(_closed_by_server(s) for s in slow) == SLOWLORIS
    finally:
        stop.set()
        trickler.join(5)
        for sock in idle + slow:
            sock.close()


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(gw: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = read_answer(sock)
        assert answer is not None and answer.status == 200
        t0 = time.monotonic()
        sock.settimeout(HEADER_TIMEOUT_S + 3)
        assert sock.recv(1) == b""
        assert HEADER_TIMEOUT_S - 0.5 < time.monotonic() - t0 < HEADER_TIMEOUT_S + 2


def _head_in_pieces(port: int, lines: int) -> int | None:
    """GET /healthz with `lines` 1 KB headers, sent a line at a time as a slow client would."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        with contextlib.suppress(OSError):  # refused: the gateway may close before the rest
            for i in range(lines):
                sock.sendall(f"x-junk-{i}: {'a' * 1000}\r\n".encode())
                time.sleep(0.002)
            sock.sendall(b"\r\n")
        answer = read_answer(sock)
    return answer.status if answer is not None else None


def test_an_oversized_request_head_is_refused(gw: GatewayProcess) -> None:
    # what a connection may buffer of a head not yet complete (max_header_bytes, 32 KiB): every
    # connection can fill it before any key is checked
    assert _head_in_pieces(gw.port, 40) == 431
    assert _head_in_pieces(gw.port, 24) == 200


def _upload(sock: socket.socket, megabytes: int, sent: list[int]) -> None:
    frame = b"100000\r\n" + b"x" * (1 << 20) + b"\r\n"
    try:
        for _ in range(megabytes):
            sock.sendall(frame)
            sent[0] += 1
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the gateway answered and closed after dropping what it drains


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_a_huge_chunked_body_is_refused_in_flat_memory(gw: GatewayProcess, with_key: bool) -> None:
    pids = worker_pids(gw)
    assert pids
    before = {pid: rss_mb(pid) for pid in pids}
    headers = {**CHUNKED, **({"authorization": f"Bearer {KEY}"} if with_key else {})}
    sent = [0]
    with contextlib.closing(open_request(gw.port, "/v1/chat/completions", headers)) as sock:
        sender = threading.Thread(target=_upload, args=(sock, 300, sent), daemon=True)
        sender.start()
        peak = dict(before)
        answer = None
        t0 = time.monotonic()
        while (sender.is_alive() or answer is None) and time.monotonic() - t0 < 60:
            peak = {pid: max(peak[pid], rss_mb(pid)) for pid in pids}
            answer = answer or read_answer(sock, timeout=0.02)
        sender.join(5)
    assert answer is not None and answer.status == (413 if with_key else 401)
    grown = {pid: round(peak[pid] - before[pid], 1) for pid in pids}
    assert max(grown.values()) < 50, f"worker RSS grew {grown} MB while {sent[0]} MB were sent"


def test_the_key_is_checked_before_the_body_is_read(gw: GatewayProcess) -> None:
    # a chunked body that never ends: the 401 cannot wait for it
    answer = raw_request(gw.port, "/v1/chat/completions", CHUNKED, b"5\r\n{\"a\":\r\n", timeout=3)
    assert answer is not None and answer.status == 401


def test_chunked_bodies_up_to_the_limit_and_over_it(gw: GatewayProcess) -> None:
    body = CHAT[:-1] + b', "user": "' + b"u" * 600_000 + b'"}'
    framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:300_000], body[300_000:]))
    answer = raw_request(gw.port, "/v1/chat/completions", {**AUTH, **CHUNKED}, framed + b"0\r\n\r\n")
    assert answer is not None and answer.status == 200
    over = b"100000\r\n" + b"x" * (1 << 20) + b"\r\n" + b"1\r\nx\r\n0\r\n\r\n"  # the limit + 1 byte
    answer = raw_request(gw.port, "/v1/chat/completions", {**AUTH, **CHUNKED}, over)
    assert answer is not None and answer.status == 413
    rid = answer.headers["x-request-id"]
    rows = gw.usage_rows(f"SELECT status, error_type, key_id FROM usage WHERE request_id = '{rid}'")
    assert rows == [{"status": 413, "error_type": "request_too_large", "key_id": "client"}]


def test_a_body_that_stops_arriving_times_out(gw: GatewayProcess) -> None:
    t0 = time.monotonic()
    answer = raw_request(gw.port, "/v1/chat/completions", {**AUTH, "content-length": "100"}, b'{"model"',
                         timeout=BODY_TIMEOUT_S + 5)
    assert answer is not None and answer.status == 408
    assert BODY_TIMEOUT_S - 0.5 < time.monotonic() - t0 < BODY_TIMEOUT_S + 3
    assert answer.headers["x-request-id"].startswith("req_")


# -- the settings handed to granian -------------------------------------------------------------


def test_the_descriptor_limit_is_raised_to_fit_the_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (1024, 65536)}
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(connections.resource, "setrlimit", lambda _, value: limits.update(now=value))
    plan = plan_connections(ServeSettings(max_connections=10_000, pool_size=256))
    assert plan.max_connections == 10_000 and plan.warning is None
    assert limits["now"] == (10_000 + 256 + connections.SPARE_FDS, 65536)


def test_connections_beyond_the_hard_limit_are_capped_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(connections.resource, "setrlimit", lambda *_: None)
    plan = plan_connections(ServeSettings(max_connections=10_000, pool_size=256))
    assert plan.max_connections == 4096 - 256 - connections.SPARE_FDS
    assert plan.warning is not None and "serving at most 3584 connections per worker" in plan.warning


def test_granian_gets_the_connection_settings() -> None:
    settings = ServeSettings(max_connections=5000, header_timeout_s=2.5, keep_alive=False, backlog=2048,
                             max_header_bytes=16384)
    options = granian_options(settings, connections.ConnectionPlan(5000, 6000))
    assert options["backpressure"] == 5000 and options["backlog"] == 2048
    http1 = options["http1_settings"]
    assert http1.header_read_timeout == 2500 and http1.keep_alive is False and http1.max_buffer_size == 16384
