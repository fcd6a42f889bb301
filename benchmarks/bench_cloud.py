"""What the cloud provider kinds cost on the request path, per request and per stream event,
against the Anthropic kind's equivalent (`.venv/bin/python -m benchmarks.bench_cloud`):

- SigV4 signing of a chat-sized Converse request (botocore's SigV4Auth over an AWSRequest);
- chat -> Converse request translation, and Converse answer -> chat.completion, vs chat ->
  Anthropic Messages and back;
- one ConverseStream event (event-stream frame decoded by botocore, CRCs checked) -> chat chunk,
  vs one Anthropic SSE event -> chat chunk;
- importing botocore and google-auth (paid once per worker that has such a provider).

Figures are medians of `--reps` runs of `--n` iterations each, in microseconds (CPU of this
process; the host is shared, so compare ratios rather than absolutes)."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from gateway.config.snapshot import ProviderRuntime
from gateway.config.types import AnthropicProvider, BedrockProvider, Timeouts
from gateway.providers.auth.sigv4 import AwsSigner
from gateway.providers.translate.codec import Outgoing
from gateway.providers.translate.openai_anthropic import OpenAIToAnthropic
from gateway.providers.translate.openai_bedrock import OpenAIToBedrock
from tests.fakes.bedrock_upstream import event

CHAT = json.dumps({"model": "m", "max_tokens": 256, "messages": [
    {"role": "system", "content": "You are a helpful assistant. " * 10},
    {"role": "user", "content": "Summarise the following text. " + "lorem ipsum dolor sit amet " * 40}]}).encode()
CONVERSE_ANSWER = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "word " * 100}]}},
                              "stopReason": "end_turn", "usage": {"inputTokens": 300, "outputTokens": 100,
                                                                  "totalTokens": 400}}).encode()
ANTHROPIC_ANSWER = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                               "content": [{"type": "text", "text": "word " * 100}], "stop_reason": "end_turn",
                               "usage": {"input_tokens": 300, "output_tokens": 100}}).encode()
FRAME = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "word "}})
SSE = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word "}}\n\n'


def _provider(spec: AnthropicProvider | BedrockProvider) -> ProviderRuntime:
    return ProviderRuntime("p", spec.kind if hasattr(spec, "kind") else "x", "http://127.0.0.1:9", (), frozenset(),
                           0, 1, Timeouts(), (), {}, spec)


def _median_us(fn: Callable[[], object], n: int, reps: int) -> float:
    runs = []
    for _ in range(reps):
        start = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - start) / n * 1e6)
    return statistics.median(runs)


def _import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    n, reps = args.n, args.reps
    bedrock = _provider(BedrockProvider(id="b", region="us-east-1"))
    anthropic = _provider(AnthropicProvider(id="a"))
    out_b = Outgoing("chat/completions", CHAT, "m", "m", False, False, provider=bedrock)
    out_a = Outgoing("chat/completions", CHAT, "m", "m", False, False, provider=anthropic)
    to_b, to_a = OpenAIToBedrock(), OpenAIToAnthropic()
    _, converse = to_b.request(out_b)
    signer = AwsSigner("b", "us-east-1", {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "secret"})
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    headers = {"content-type": "application/json", "accept": "application/json"}
    loop = asyncio.new_event_loop()
    loop.run_until_complete(signer.sign("POST", url, headers, converse))  # resolve credentials once

    def sign() -> object:
        return loop.run_until_complete(signer.sign("POST", url, headers, converse))

    stream_out = Outgoing("chat/completions", CHAT, "m", "m", True, False, provider=bedrock)
    tap_b, tap_a = to_b.stream(stream_out), to_a.stream(stream_out)
    rows = [
        ("request chat -> upstream", _median_us(lambda: to_b.request(out_b), n, reps),
         _median_us(lambda: to_a.request(out_a), n, reps)),
        ("answer upstream -> chat", _median_us(lambda: to_b.response(CONVERSE_ANSWER, out_b), n, reps),
         _median_us(lambda: to_a.response(ANTHROPIC_ANSWER, out_a), n, reps)),
        ("one stream event -> chat chunk", _median_us(lambda: tap_b.feed(FRAME), n * 5, reps),
         _median_us(lambda: tap_a.feed(SSE), n * 5, reps)),
        ("SigV4 signing (per request)", _median_us(sign, n, reps), 0.0),
    ]
    print(f"{'µs per operation (median of ' + str(reps) + ')':<34} {'bedrock':>9} {'anthropic':>10} {'ratio':>6}")
    for name, b, a in rows:
        ratio = f"{b / a:.2f}x" if a else ""
        print(f"{name:<34} {b:>9.1f} {a:>10.1f} {ratio:>6}")
    for module in ("botocore.auth, botocore.eventstream", "google.oauth2.service_account, google.auth.transport.requests"):
        print(f"import {module}: {_import_ms(module):.0f} ms (once per worker with such a provider)")


if __name__ == "__main__":
    main()
