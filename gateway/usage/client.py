"""Talking to the ledger from any process: through the owner's socket when a gateway runs, or
by taking ownership for the duration of one call when none does (the CLI on a stopped gateway).
Nobody but the owner opens the DuckDB file, so readers never fight the ingester for its lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import msgspec

from .lock import LEDGER_FILE, socket_path, try_lock
from .spool import ready_segments


class LedgerUnavailable(Exception):
    pass


class _NoOwner(Exception):
    """Nobody listens on the socket (no owner, or one that died without cleaning up)."""


def _ask_socket(path: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise _NoOwner from None
        try:
            s.sendall(msgspec.json.encode(request) + b"\n")
            chunks = []
            while chunk := s.recv(1 << 16):
                chunks.append(chunk)
            answer = msgspec.json.decode(b"".join(chunks))
        except (OSError, msgspec.DecodeError) as exc:
            raise LedgerUnavailable(f"the ledger owner did not answer ({type(exc).__name__})") from None
    if not isinstance(answer, dict):
        raise LedgerUnavailable("bad answer from the ledger owner")
    return answer


def call(data_dir: Path, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Blocking call used by the CLI: through the owner, or as the owner for this one call."""
    path = socket_path(data_dir)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(_NoOwner):
            return _ask_socket(path, request, timeout)
        fd = try_lock(data_dir)
        if fd is not None:
            try:
                from .store import LedgerStore, dispatch

                # rows it ingests are queued for the gateway's Parquet sink (written at its next start)
                store = LedgerStore(data_dir / LEDGER_FILE, inherit_parquet=True)
                try:
                    store.ingest(ready_segments(data_dir / "spool"))  # leftovers of a stopped gateway
                    return dispatch(store, request)
                finally:
                    store.close()
            finally:
                os.close(fd)
        if time.monotonic() > deadline:  # locked but not answering: an owner is starting up
            raise LedgerUnavailable(f"the ledger in {data_dir} is locked by a process that does not answer")
        time.sleep(0.05)


async def acall(data_dir: Path, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Non-blocking call used inside the server (any worker)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(socket_path(data_dir)), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise LedgerUnavailable(f"no ledger owner is answering ({type(exc).__name__})") from None
    try:
        writer.write(msgspec.json.encode(request) + b"\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=timeout)  # the owner closes after its answer
    except (OSError, TimeoutError) as exc:
        raise LedgerUnavailable(f"the ledger owner did not answer ({type(exc).__name__})") from None
    finally:
        writer.close()
    try:
        answer = msgspec.json.decode(data) if data else None
    except msgspec.DecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise LedgerUnavailable("the ledger owner closed the connection without an answer")
    return answer
