"""Shared by the request-intake tests: a real gateway in front of the built-in mock provider, raw
HTTP/1.1 over a socket (bytes written by hand: bad framing, cut bodies, slow senders), and the
RSS of the gateway's worker processes."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import key_hash
from tests.gateway_process import GatewayProcess

KEY, FAR = "tg-intake-client", "tg-intake-far"
BUNDLE = """
schema = 1

[settings]
pricing = "lenient"
max_body_bytes = 1048576

[[provider]]
id = "mock"
kind = "mock"
models = ["m"]

[group.team]

[[key]]
id = "client"
hash = "{key}"
group = "team"

[[key]]
id = "far"
hash = "{far}"
group = "team"
ip_allow = ["10.0.0.0/8"]
"""
CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


def intake_gateway(root: Path, env: dict[str, str] | None = None) -> GatewayProcess:
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "bundle.toml").write_text(BUNDLE.format(key=key_hash(KEY), far=key_hash(FAR)))
    return GatewayProcess(root / "policies", root / "data", env=env)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_answer(raw: bytes) -> Answer | None:
    """The first response in `raw`, once whole (its content-length read); None before."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return Answer(int(lines[0].split()[1]), headers, rest[:length])


def read_answer(sock: socket.socket, timeout: float = 5.0) -> Answer | None:
    """Read until a whole response arrived, the peer closed, or `timeout` passed."""
    sock.settimeout(0.05)
    raw = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = parse_answer(raw)
        if answer is not None:
            return answer
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        raw += data
    return parse_answer(raw)


def open_request(port: int, path: str, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def raw_request(port: int, path: str, headers: dict[str, str], body: bytes = b"",
                half_close: bool = False, timeout: float = 5.0) -> Answer | None:
    """Send a request written by hand; `half_close` ends the client's side after it."""
    with contextlib.closing(open_request(port, path, headers, body)) as sock:
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock, timeout)


def worker_pids(gw: GatewayProcess) -> list[int]:
    """granian's worker processes: the serving process's children, but for the usage ingester."""
    assert gw.proc is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{gw.proc.pid}\n" in status and b"gateway.usage.ingester" not in cmdline:
            pids.append(int(entry.name))
    return pids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
