"""The serving process of `tollgate serve` with the native server: binds the listening socket,
forks the workers (worker.py), starts a new one for each that dies, replaces them all on SIGHUP,
and on SIGTERM or SIGINT stops them gracefully (SIGKILL after the grace period). Standard
library only: the workers import the application after the fork, this process never does
(gateway/serve/run.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

RESPAWN_PAUSE_S = 1.0  # between restarts of a worker that keeps dying at once


def listen(host: str, port: int, backlog: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class Supervisor:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.sock = listen(options["address"], options["port"], options["backlog"])
        self.workers: dict[int, int] = {}  # pid -> worker number
        self.stopping = False
        self.started: dict[int, float] = {}

    def spawn(self, number: int, pause: bool = True) -> None:
        last = self.started.get(number, 0.0)
        if pause and time.monotonic() - last < RESPAWN_PAUSE_S:
            time.sleep(RESPAWN_PAUSE_S)
        self.started[number] = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child()
        self.workers[pid] = number

    def _child(self) -> None:
        code = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            from .worker import run_worker

            run_worker(self.sock, self.options)
            code = 0
        except KeyboardInterrupt:
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            signal.alarm(max(1, int(self.options["workers_kill_timeout"])))
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)

    def _respawn(self, _signum: int, _frame: Any) -> None:
        """SIGHUP: new workers (they read the bundle afresh), then the old ones stop gracefully."""
        if self.stopping:
            return
        old, self.workers = self.workers, {}
        for number in sorted(old.values()):
            self.spawn(number, pause=False)
        for pid in old:
            _signal(pid, signal.SIGTERM)

    def _kill(self, _signum: int, _frame: Any) -> None:
        for pid in self.workers:
            _signal(pid, signal.SIGKILL)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGALRM, self._kill)
        signal.signal(signal.SIGHUP, self._respawn)
        for number in range(self.options["workers"]):
            self.spawn(number)
        print(f"tollgate: listening on http://{self.options['address']}:{self.options['port']} "
              f"({self.options['workers']} worker(s))", file=sys.stderr, flush=True)
        while self.workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            number = self.workers.pop(pid, -1)
            if number < 0 or self.stopping:  # not a worker (the ledger owner), or stopping
                continue
            print(f"tollgate: worker {number} (pid {pid}) exited with status {status}; starting a "
                  "new one", file=sys.stderr, flush=True)
            self.spawn(number)
        signal.alarm(0)
        self.sock.close()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def serve(options: dict[str, Any]) -> None:
    Supervisor(options).run()
