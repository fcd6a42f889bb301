"""The gateways under test: how each is installed (cached under benchmarks/.work/), configured
against the mock upstream, started, and called.

Targets: direct (the mock itself), nginx (the no-logic floor), tollgate, and the peers litellm,
portkey and tensorzero. A target that cannot be installed or started is reported, not fatal.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procs
from benchmarks.bundle import bench_key, write_bundle

MOCK_MODEL = "mock-chat"  # the upstream model name the mock sees
MOCK_PACED = "mock-chat-paced"  # ends in -paced: the mock paces its events


class TargetError(Exception):
    """A target could not be installed or started; the message says why."""


@dataclass
class Context:
    repo: Path
    work: Path  # benchmarks/.work
    mock_port: int
    target_cpus: str | None  # the core the target and the load generator share
    install: bool = True  # install missing peers (else skip them)
    base_repo: Path | None = None  # another checkout (with its .venv) run as `tollgate-base`

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def peers(self) -> Path:
        return self.work / "peers"


@dataclass
class Endpoint:
    url: str  # the chat completions URL
    headers: dict[str, str]
    model: str
    paced_model: str


@dataclass
class Running:
    endpoint: Endpoint
    managed: procs.Managed | None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()
        for fn in self.cleanup:
            fn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(argv: list[str], timeout: float, log: Path, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> None:
    """Run an install step, its output appended to `log`; raise TargetError on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    merged = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=cwd, env=merged, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TargetError(f"{argv[0]} timed out after {timeout:.0f} s (see {log})") from exc
        except OSError as exc:
            raise TargetError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-6:])
        raise TargetError(f"{' '.join(argv[:4])} failed (exit {done.returncode}, see {log}):\n{tail}")


def output(argv: list[str], timeout: float = 60) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def ensure_apt(binary: str, package: str, log: Path) -> str:
    """The path of `binary`, installing Debian's `package` if it is missing."""
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "install", "-y", "--no-install-recommends", package], 600, log, env=env)
    except TargetError:
        run(["apt-get", "update"], 600, log, env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", package], 600, log, env=env)
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not found:
        raise TargetError(f"{package} installed but {binary} not found")
    return found


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    if m is None:
        raise ValueError(url)
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
    try:
        conn.request("POST", m.group(3), body=body, headers={"content-type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Say hello to the benchmark in one short sentence."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def wait_ready(running: Running, timeout: float) -> float:
    """Seconds from the process start until it answers a chat completion with 200."""
    ep = running.endpoint
    started = running.managed.started_at if running.managed else time.perf_counter()
    deadline = started + timeout
    last = ""
    body = chat_body(ep.model, stream=False)
    refusing_since: float | None = None  # it answers, but not with 200: a config error, not slowness
    while time.perf_counter() < deadline:
        if running.managed is not None and not running.managed.alive():
            raise TargetError(f"exited with {running.managed.proc.returncode} before answering:\n"
                              f"{running.managed.log_tail()}")
        try:
            status, answer = post(ep.url, body, ep.headers, timeout=2.0)
            if status == 200 and b"choices" in answer:
                return time.perf_counter() - started
            last = f"HTTP {status}: {answer[:300]!r}"
            refusing_since = refusing_since or time.perf_counter()
            if time.perf_counter() - refusing_since > 15:
                break
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.05)
    tail = running.managed.log_tail() if running.managed else ""
    raise TargetError(f"no 200 answer within {time.perf_counter() - started:.0f} s (last: {last})\n{tail}")


class Target:
    name = ""
    kind = "peer"  # floor | tollgate | peer
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        """Install if needed (cached); raise TargetError when the target cannot run."""

    def version(self, ctx: Context) -> str:
        return ""

    def launch(self, ctx: Context) -> Running:
        raise NotImplementedError


class Direct(Target):
    name = "direct"
    kind = "floor"

    def version(self, ctx: Context) -> str:
        return "benchmarks.mock_upstream (asyncio + uvloop protocol)"

    def launch(self, ctx: Context) -> Running:
        return Running(Endpoint(f"http://127.0.0.1:{ctx.mock_port}/v1/chat/completions", {},
                                MOCK_MODEL, MOCK_PACED), None)


class Nginx(Target):
    name = "nginx"
    kind = "floor"

    def prepare(self, ctx: Context) -> None:
        self.binary = ensure_apt("nginx", "nginx-light", ctx.logs / "install-nginx.log")

    def version(self, ctx: Context) -> str:
        return output([self.binary, "-v"]).replace("nginx version: ", "")

    def launch(self, ctx: Context) -> Running:
        port = free_port()
        prefix = ctx.work / "nginx"
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream mock {{
        server 127.0.0.1:{ctx.mock_port};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
}}
""")
        managed = procs.start("nginx", [self.binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                              ctx.logs / "nginx.log", ctx.target_cpus)
        return Running(Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", {}, MOCK_MODEL, MOCK_PACED),
                       managed)


class Tollgate(Target):
    name = "tollgate"
    kind = "tollgate"
    startup_timeout = 60.0

    def checkout(self, ctx: Context) -> Path:
        return ctx.repo

    def prepare(self, ctx: Context) -> None:
        self.binary = self.checkout(ctx) / ".venv" / "bin" / "tollgate"
        if not self.binary.exists():
            raise TargetError(f"{self.binary} is missing: run `make` (pip install -e .) first")
        help_text = output([str(self.binary), "serve", "--help"])
        if "--policies" not in help_text or "--data-dir" not in help_text:
            raise TargetError("`tollgate serve` is not available yet (no serve command with --policies "
                              "and --data-dir); Tollgate skipped")
        self.bundle = write_bundle(ctx.work / "bundle", ctx.mock_port)
        check = subprocess.run([str(self.binary), "check", str(self.bundle)], capture_output=True,
                               text=True, timeout=120, check=False)
        if check.returncode != 0:
            raise TargetError(f"the generated bundle does not pass `tollgate check`:\n{check.stdout}{check.stderr}")

    def version(self, ctx: Context) -> str:
        rev = output(["git", "-C", str(self.checkout(ctx)), "describe", "--always", "--dirty"])
        return f"git {rev}" if rev else "unknown"

    def launch(self, ctx: Context) -> Running:
        port = free_port()
        data = ctx.work / "tollgate-data" / f"{os.getpid()}-{port}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "serve", "--policies", str(self.bundle), "--port", str(port),
                "--workers", "1", "--data-dir", str(data), "--log-level", "warning"]
        # run from the checkout: the supervisor is `python -m gateway.serve.run`, and `-m` puts the
        # working directory first on sys.path (from elsewhere, tollgate-base ran this tree's code)
        managed = procs.start(self.name, argv, ctx.logs / f"{self.name}.log", ctx.target_cpus,
                              cwd=self.checkout(ctx))
        endpoint = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions",
                            {"authorization": f"Bearer {bench_key()}"}, "bench", "bench-paced")
        return Running(endpoint, managed, [lambda: shutil.rmtree(data, ignore_errors=True)])


class TollgateBase(Tollgate):
    """Tollgate from another checkout (`--base-repo`, e.g. a `git worktree` of the commit before
    a change, with its own .venv): before and after measured in one run."""

    name = "tollgate-base"

    def checkout(self, ctx: Context) -> Path:
        if ctx.base_repo is None:
            raise TargetError("tollgate-base needs --base-repo DIR (a checkout with its own .venv)")
        return ctx.base_repo


def python_venv(ctx: Context, name: str, spec: str, check: str) -> Path:
    """A cached venv under .work/peers/<name> with `spec` installed; returns its python."""
    home = ctx.peers / name
    python = home / "venv" / "bin" / "python"
    stamp = home / ".installed"
    if stamp.exists() and stamp.read_text() == spec and python.exists():
        return python
    if not ctx.install:
        raise TargetError(f"{name} is not installed (run without --no-install)")
    log = ctx.logs / f"install-{name}.log"
    base = shutil.which("python3") or sys.executable
    if not python.exists():
        run([base, "-m", "venv", str(home / "venv")], 300, log)
    run([str(python), "-m", "pip", "install", "-q", spec], 1500, log)
    run([str(python), "-c", check], 300, log)
    stamp.write_text(spec)
    return python


def pip_version(python: Path, package: str) -> str:
    return output([str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"])


class LiteLLM(Target):
    name = "litellm"
    startup_timeout = 120.0

    def prepare(self, ctx: Context) -> None:
        self.python = python_venv(ctx, "litellm", "litellm[proxy]", "import litellm, fastapi, uvicorn")
        self.cli = self.python.parent / "litellm"

    def version(self, ctx: Context) -> str:
        return pip_version(self.python, "litellm")

    def launch(self, ctx: Context) -> Running:
        port = free_port()
        home = ctx.peers / "litellm"
        config = home / "config.yaml"
        entries = ""
        for alias, model in (("bench", MOCK_MODEL), ("bench-paced", MOCK_PACED)):
            entries += (f"  - model_name: {alias}\n    litellm_params:\n      model: openai/{model}\n"
                        f"      api_base: http://127.0.0.1:{ctx.mock_port}/v1\n      api_key: sk-bench\n")
        config.write_text(f"model_list:\n{entries}general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n")
        master = "sk-" + secrets.token_hex(32)
        env: dict[str, str | None] = {"LITELLM_MASTER_KEY": master, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                      "LITELLM_LOG": "ERROR", "DATABASE_URL": None}
        argv = [str(self.cli), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", "1"]
        managed = procs.start("litellm", argv, ctx.logs / "litellm.log", ctx.target_cpus, env=env, cwd=home)
        endpoint = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions",
                            {"authorization": f"Bearer {master}"}, "bench", "bench-paced")
        return Running(endpoint, managed)


PORTKEY_PACKAGE = {
    "name": "tollgate-bench-portkey",
    "private": True,
    "dependencies": {"@portkey-ai/gateway": "*", "@hono/node-server": "1.13.8"},
    # streaming answers HTTP 500 (TypeError: immutable) with newer @hono/node-server
    "overrides": {"@hono/node-server": "1.13.8"},
}


class Portkey(Target):
    name = "portkey"

    def prepare(self, ctx: Context) -> None:
        home = ctx.peers / "portkey"
        self.home = home
        self.script = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        spec = json.dumps(PORTKEY_PACKAGE, indent=2) + "\n"
        stamp = home / ".installed"
        self.node = shutil.which("node")
        if stamp.exists() and stamp.read_text() == spec and self.script.exists() and self.node:
            return
        if not ctx.install:
            raise TargetError("portkey is not installed (run without --no-install)")
        log = ctx.logs / "install-portkey.log"
        npm = shutil.which("npm")
        if npm is None or self.node is None:
            ensure_apt("npm", "npm", log)
            npm, self.node = shutil.which("npm"), shutil.which("node")
            if npm is None or self.node is None:
                raise TargetError("node/npm not available")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(spec)
        run([npm, "install", "--no-audit", "--no-fund"], 900, log, cwd=home)
        if not self.script.exists():
            raise TargetError(f"npm install did not produce {self.script}")
        stamp.write_text(spec)

    def version(self, ctx: Context) -> str:
        try:
            pkg = json.loads((self.script.parent.parent / "package.json").read_text())
            hono = json.loads((self.home / "node_modules" / "@hono" / "node-server" / "package.json").read_text())
        except (OSError, ValueError):
            return ""
        return f"{pkg.get('version')} (node {output([self.node or 'node', '-v'])}, @hono/node-server {hono.get('version')})"

    def launch(self, ctx: Context) -> Running:
        port = free_port()
        argv = [self.node or "node", str(self.script), f"--port={port}", "--headless"]
        managed = procs.start("portkey", argv, ctx.logs / "portkey.log", ctx.target_cpus, cwd=self.home)
        headers = {"authorization": "Bearer sk-bench", "x-portkey-provider": "openai",
                   "x-portkey-custom-host": f"http://127.0.0.1:{ctx.mock_port}/v1"}
        return Running(Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", headers, MOCK_MODEL, MOCK_PACED),
                       managed)


TENSORZERO_LAUNCHER = '''"""Start the TensorZero gateway embedded in its Python wheel; print its URL; wait for SIGTERM."""
import signal
import sys
import threading

from tensorzero import _start_http_gateway

gateway = _start_http_gateway(config_file=sys.argv[1], clickhouse_url=None, postgres_url=None,
                              valkey_url=None, async_setup=False)
print("TENSORZERO_URL", gateway.base_url, flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
while not stop.wait(3600):
    pass
'''


class TensorZero(Target):
    name = "tensorzero"
    startup_timeout = 90.0

    def prepare(self, ctx: Context) -> None:
        self.python = python_venv(ctx, "tensorzero", "tensorzero", "from tensorzero import _start_http_gateway")

    def version(self, ctx: Context) -> str:
        return pip_version(self.python, "tensorzero")

    def launch(self, ctx: Context) -> Running:
        home = ctx.peers / "tensorzero"
        config = home / "tensorzero.toml"
        models = ""
        for alias, model in (("bench", MOCK_MODEL), ("bench-paced", MOCK_PACED)):
            models += (f'\n[models."{alias}"]\nrouting = ["mock"]\n\n[models."{alias}".providers.mock]\n'
                       f'type = "openai"\nmodel_name = "{model}"\n'
                       f'api_base = "http://127.0.0.1:{ctx.mock_port}/v1"\napi_key_location = "none"\n')
        config.write_text(f"[gateway]\nobservability.enabled = false\n{models}")
        launcher = home / "launch.py"
        launcher.write_text(TENSORZERO_LAUNCHER)
        log = ctx.logs / "tensorzero.log"
        managed = procs.start("tensorzero", [str(self.python), str(launcher), str(config)], log,
                              ctx.target_cpus, env={"RUST_LOG": "error", "TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS": "1"})
        deadline = time.perf_counter() + self.startup_timeout
        base = None
        while time.perf_counter() < deadline and managed.alive():
            m = re.search(r"TENSORZERO_URL (\S+)", log.read_text(errors="replace"))
            if m:
                base = m.group(1).rstrip("/")
                break
            time.sleep(0.05)
        if base is None:
            tail = managed.log_tail()
            managed.stop()
            raise TargetError(f"the TensorZero launcher printed no URL:\n{tail}")
        # the embedded gateway reports its OpenAI-compatible base (".../openai/v1")
        url = f"{base}/chat/completions" if base.endswith("/openai/v1") else f"{base}/openai/v1/chat/completions"
        endpoint = Endpoint(url, {},
                            "tensorzero::model_name::bench", "tensorzero::model_name::bench-paced")
        return Running(endpoint, managed)


ALL: dict[str, type[Target]] = {
    "direct": Direct,
    "nginx": Nginx,
    "tollgate": Tollgate,
    "tollgate-base": TollgateBase,
    "tensorzero": TensorZero,
    "portkey": Portkey,
    "litellm": LiteLLM,
}
