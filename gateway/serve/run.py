"""The long-lived half of `tollgate serve`: the supervisor that starts the ledger owner and runs
granian, and from which granian forks its workers.

`tollgate serve` (command.py) checks the settings and the bundle with everything that takes
(pydantic, the config compiler, CEL, lark), then replaces itself (`os.execv`, same pid) with
`python -m gateway.serve.run FD`, FD being a pipe with the JSON of what is left to do. This process
therefore imports only the standard library and granian (~20 MB of RSS instead of ~55 MB); each
worker forked from it imports the app itself. Keep it that way: no import of `gateway.*` beyond
the stdlib-only `usage.lock` here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..usage.lock import socket_path


def start_ingester(cmd: list[str], data_dir: Path) -> subprocess.Popen[bytes] | None:
    """The usage ledger's owner runs in its own process, so that workers never load DuckDB."""
    proc = subprocess.Popen(cmd)
    path = socket_path(data_dir)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            return proc
        time.sleep(0.02)
    # Not fatal: a worker takes the ledger over when nobody holds it.
    print("tollgate: the usage ingester did not start; a worker will own the ledger", file=sys.stderr)
    return proc if proc.poll() is None else None


def run_granian(options: dict[str, Any]) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    try:
        import uvloop  # noqa: F401

        loop = Loops.uvloop
    except ImportError:
        loop = Loops.asyncio
    http1 = HTTP1Settings(**options.pop("http1_settings"))
    log_level = LogLevels(options.pop("log_level"))
    Granian(
        "gateway.server.app:app",
        interface=Interfaces.RSGI,
        http=HTTPModes.http1,  # clients and SDKs speak HTTP/1.1; skips protocol detection
        websockets=True,  # the Realtime API (/v1/realtime); other paths refuse an upgrade
        loop=loop,
        log_level=log_level,
        respawn_failed_workers=True,
        http1_settings=http1,
        **options,
    ).serve()


def run(plan: dict[str, Any]) -> int:
    ingester_cmd = plan.get("ingester")
    ingester = start_ingester(ingester_cmd, Path(plan["data_dir"])) if ingester_cmd else None
    try:
        if plan["server"] == "native":
            from ..h1server.supervisor import serve  # standard library only, like this module

            serve(dict(plan["native"]))
        else:
            run_granian(dict(plan["granian"]))
    finally:
        if ingester is not None:
            ingester.terminate()  # it loads what the workers spooled last, then exits
            try:
                ingester.wait(30)
            except subprocess.TimeoutExpired:
                ingester.kill()
    return 0


def read_plan(fd: int) -> dict[str, Any]:
    with os.fdopen(fd, "rb") as pipe:
        plan: dict[str, Any] = json.loads(pipe.read())
    return plan


if __name__ == "__main__":
    raise SystemExit(run(read_plan(int(sys.argv[1]))))
