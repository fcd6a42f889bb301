"""`tollgate serve`: check the settings and the bundle, then hand over (exec) to run.py, which
starts the ledger owner and runs granian's RSGI workers on `gateway.server.app`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import compiled
from ..billing.setup import redis_url_problem, workers_problem
from ..config import BundleError, load_snapshot
from ..settings import CONFIG_ENV, ServeSettings
from ..worker_settings import as_worker_settings
from .connections import ConnectionPlan, granian_options, plan_connections

_COMPILED = {
    "on": "request path compiled",
    "stale": "request path NOT compiled: a source changed since the build (make native)",
    "off": "request path not compiled (make native)",
}


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="settings file (TOML) with the options below")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--policies", help="policy bundle directory (default: policies)")
    serve.add_argument("--data-dir", help="usage ledger and state (default: data)")
    serve.add_argument("--env-file", metavar="PATH",
                       help="NAME=value file over the environment ${VAR} reads; re-read on reload")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--server", choices=["native", "granian"],
                       help="HTTP server: Tollgate's own (default) or granian's")
    serve.add_argument("--transport", choices=["h1", "aiohttp", "httpx-aiohttp", "httpx"])
    serve.add_argument("--no-ledger", action="store_true", help="do not record usage")
    serve.add_argument("--state-store", choices=["memory", "redis"], help="limit counters (default: memory)")
    serve.add_argument("--redis-url", help="redis://host:6379/0 (with --state-store redis)")
    serve.add_argument("--redis-cluster", action="store_true", default=None,
                       help="redis_url names a node of a Redis Cluster")
    serve.add_argument("--node-id", help="this machine's name in usage Parquet files (default: host name)")
    serve.add_argument("--usage-parquet-dir", help="also write usage as Parquet here (a shared directory)")
    serve.add_argument("--max-connections", type=int,
                       help="open client connections per worker, idle ones included (default: 16384)")
    serve.add_argument("--header-timeout", type=float, metavar="SECONDS",
                       help="to send a request head; also the keep-alive idle timeout (default: 10)")
    serve.add_argument("--no-keep-alive", action="store_true",
                       help="close each client connection after one request")
    serve.add_argument("--max-header-bytes", type=int,
                       help="request head buffered before it is complete, else 431 (default: 32768)")
    serve.add_argument("--backlog", type=int,
                       help="listen queue of not yet accepted connections (default: 4096)")
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    flags = {
        name: value
        for name, value in {
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "policies": args.policies,
            "data_dir": args.data_dir,
            "env_file": args.env_file,
            "log_level": args.log_level,
            "transport": args.transport,
            "server": args.server,
            "ledger": False if args.no_ledger else None,
            "state_store": args.state_store,
            "redis_url": args.redis_url,
            "redis_cluster": args.redis_cluster,
            "node_id": args.node_id,
            "usage_parquet_dir": args.usage_parquet_dir,
            "max_connections": args.max_connections,
            "header_timeout_s": args.header_timeout,
            "keep_alive": False if args.no_keep_alive else None,
            "backlog": args.backlog,
            "max_header_bytes": args.max_header_bytes,
        }.items()
        if value is not None
    }
    try:
        settings = ServeSettings(**flags)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"cannot start: invalid settings: {problems}", file=sys.stderr)
        return 2
    try:
        snapshot = load_snapshot(settings.policies, env_file=settings.env_file)
    except BundleError as exc:
        print(f"cannot start: the policy bundle is invalid\n{exc}", file=sys.stderr)
        return 1
    checked = as_worker_settings(settings)  # as the workers will hold them
    problem = (workers_problem(checked, snapshot) or redis_url_problem(checked)
               or listen_problem(settings.host, settings.port))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(settings.to_env())  # workers are new processes: they read these
    print(
        f"tollgate: serving {settings.policies} (revision {snapshot.revision}) on "
        f"http://{settings.host}:{settings.port} with {settings.workers} worker(s); "
        f"{_COMPILED[compiled.status()]}",
        file=sys.stderr,
    )
    plan = plan_connections(settings)  # raises the descriptor limit: inherited through exec
    if plan.warning:
        print(plan.warning, file=sys.stderr)
    run_plan = {
        "data_dir": str(settings.data_dir),
        "ingester": ingester_command(settings) if settings.ledger else None,
        "server": settings.server,
        # only the chosen server's options: building granian's imports granian
        settings.server: (native_options if settings.server == "native" else granian_plan)(settings, plan),
    }
    # The rest runs in a fresh interpreter with this pid (run.py): what was loaded to check the
    # settings and the bundle is not kept, nor inherited by the workers granian forks from it.
    # The plan goes through a pipe (small: it fits the pipe's buffer), not the command line, which
    # `ps` shows and which the workers forked from run.py share.
    read_end, write_end = os.pipe()
    os.write(write_end, json.dumps(run_plan).encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: `-m` would put the working directory first on sys.path, and a `gateway/` directory
    # there (another checkout, a GitOps repo's folder) would be imported instead of this package
    os.execv(sys.executable, [sys.executable, "-P", "-m", "gateway.serve.run", str(read_end)])
    return 0


def granian_plan(settings: ServeSettings, plan: ConnectionPlan) -> dict[str, Any]:
    """What serve/run.py hands to `Granian(...)`."""
    options = granian_options(settings, plan)
    options["http1_settings"] = dataclasses.asdict(options["http1_settings"])
    return {
        "address": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_level": settings.log_level,
        "workers_kill_timeout": int(settings.shutdown_grace_s),
        **options,
    }


def native_options(settings: ServeSettings, plan: ConnectionPlan) -> dict[str, Any]:
    """What gateway/h1server/supervisor.py and its workers need."""
    return {
        "address": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "backlog": settings.backlog,
        "max_connections": plan.max_connections,
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout_s": settings.header_timeout_s,
        "keep_alive": settings.keep_alive,
        "grace_s": settings.shutdown_grace_s,
        "workers_kill_timeout": settings.shutdown_grace_s + 5,
    }


def listen_problem(host: str, port: int) -> str | None:
    """Granian reports a taken port with a Rust backtrace: check first and say it plainly."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot start: cannot resolve host {host!r}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return f"cannot start: cannot listen on {host}:{port}: {reason} (set --port or TOLLGATE_PORT)"
    return None


def ingester_command(settings: ServeSettings) -> list[str]:
    """The usage ledger's owner (usage/ingester.py), started by run.py next to the workers."""
    cmd = [
        sys.executable,
        "-P",  # as for the supervisor: never a `gateway/` of the working directory
        "-m",
        "gateway.usage.ingester",
        "--data-dir",
        str(settings.data_dir),
        "--policies",
        str(settings.policies),
        "--interval",
        str(settings.ledger_interval_s),
        "--idle-release",
        str(settings.ledger_idle_release_s),
    ]
    if settings.usage_parquet_dir is None:
        cmd.append("--no-parquet")  # read here already: the owner need not load the settings again
    return cmd
