"""A real `redis-server` on a free 127.0.0.1 port, started and stopped by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """`stop()` then `start()` again reuses the port, so gateways see Redis go away and return."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (make system-deps installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"CLUSTER INFO\r\n")
            return b"cluster_state:ok" in s.recv(4096)
    except OSError:
        return False


class RedisCluster:
    """Three `redis-server` primaries in cluster mode (no replicas) on free 127.0.0.1 ports, the
    16384 slots spread over them by `redis-cli --cluster create`. `stop()` ends every node."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        self.ports = [_free_port() for _ in range(size)]
        self.bus_ports = [_free_port() for _ in range(size)]  # else port + 10000, maybe taken or > 65535
        self.procs: list[subprocess.Popen[bytes]] = []
        self.created = False

    def url(self, port: int | None = None) -> str:
        """A startup node for the client (any node of the cluster will do)."""
        return f"redis://127.0.0.1:{port or self.ports[0]}/0"

    def slot_owner(self, key: str) -> int:
        """The port of the node that owns `key`'s slot (asked of the cluster itself)."""
        cli = self._cli()
        slot = int(subprocess.run([cli, "-p", str(self.ports[0]), "cluster", "keyslot", key],
                                  capture_output=True, check=True, text=True, timeout=10).stdout)
        lines = subprocess.run([cli, "-p", str(self.ports[0]), "cluster", "slots"], capture_output=True,
                               check=True, text=True, timeout=10).stdout.split()
        # flat output: start end ip port id [replicas...] per range, ranges in sequence
        i = 0
        while i + 4 < len(lines):
            start, end, port = int(lines[i]), int(lines[i + 1]), int(lines[i + 3])
            if start <= slot <= end:
                return port
            i += 5
        raise AssertionError(f"no node owns slot {slot}")

    def move_slot(self, key: str, to_port: int) -> None:
        """Migrate `key`'s slot, with its keys, to the node at `to_port` (as `redis-cli --cluster
        reshard` does): clients that still route by the old slot map get MOVED."""
        import redis

        nodes = {port: redis.Redis(host="127.0.0.1", port=port) for port in self.ports}
        try:
            ids = {port: node.execute_command("CLUSTER", "MYID").decode() for port, node in nodes.items()}
            slot = int(nodes[to_port].execute_command("CLUSTER", "KEYSLOT", key))
            source = self.slot_owner(key)
            nodes[to_port].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
            nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to_port])
            while keys := nodes[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                nodes[source].execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            for port in [to_port, source, *(p for p in self.ports if p not in (to_port, source))]:
                nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to_port])
        finally:
            for node in nodes.values():
                node.close()

    def keys(self, port: int) -> list[str]:
        import redis

        with redis.Redis(host="127.0.0.1", port=port) as node:
            return sorted(k.decode() for k in node.keys("*"))

    def _cli(self) -> str:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed (make system-deps installs it)")
        return cli

    def start(self, timeout: float = 20.0) -> RedisCluster:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (make system-deps installs it)")
        cli = self._cli()
        self.directory.mkdir(parents=True, exist_ok=True)
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            self.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes", "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
                 "--cluster-node-timeout", "2000", "--dir", str(self.directory),
                 "--logfile", str(self.directory / f"redis-{port}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        deadline = time.monotonic() + timeout
        try:
            for port, proc in zip(self.ports, self.procs, strict=True):
                while not _answers_ping(port):
                    if proc.poll() is not None:
                        raise RuntimeError(f"redis-server (cluster node {port}) exited with {proc.returncode}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server (cluster node {port}) did not answer PING")
                    time.sleep(0.02)
            if not self.created:  # started again: the nodes find each other from their nodes-*.conf
                subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                                "--cluster-replicas", "0", "--cluster-yes"],
                               capture_output=True, check=True, timeout=timeout)
                self.created = True
            while not all(_cluster_ok(p) for p in self.ports):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
