"""SIGTERM: the gateway stops accepting, lets an in-flight stream finish, exits 0."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.conftest import KEYS, write_relay_bundle
from tests.fakes.openai_upstream import FakeUpstream
from tests.gateway_process import GatewayProcess


def test_sigterm_lets_streams_finish(upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path) -> None:
    a, b = upstreams
    a.reset()
    write_relay_bundle(tmp_path / "policies", a, b)
    a.script("slow-stream", chunk_delay=0.1, chunks=[f"w{i} " for i in range(15)])
    gw = GatewayProcess(tmp_path / "policies", tmp_path / "data").start()
    received: list[str] = []
    first = threading.Event()

    def read_stream() -> None:
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {KEYS['client']}"},
                          json={"model": "slow-stream", "stream": True, "messages": []}) as r:
            for text in r.iter_text():
                received.append(text)
                first.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert first.wait(10)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    reader.join(30)
    body = "".join(received)
    assert "w14" in body and "[DONE]" in body  # the in-flight stream was not cut
    assert gw.proc.wait(20) == 0
