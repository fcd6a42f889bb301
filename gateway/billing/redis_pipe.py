"""Automatic pipelining of Lua script calls: every call made during one event-loop tick goes to
Redis in one pipeline (one write, one connection checkout), still one round trip per request.

Measured with 32 requests in flight: ~21 µs of gateway CPU per admission instead of ~73 µs for
one command per call (most of the difference is one `send` system call per command). A call
alone in its tick is a pipeline of one. Scripts are called by SHA; after a Redis restart
(NOSCRIPT) they are loaded again and the calls retried. redis-py provides the connections
(pool, auth, TLS, RESP parsing); commands are packed here.

Redis Cluster (`ClusterScriptPipe`): every key of the store shares one hash tag, so every call
goes to the one node owning that slot, pipelined there the same way. redis-py's `RedisCluster`
keeps the slot map; a call answered with MOVED / ASK / TRYAGAIN / CLUSTERDOWN / NOSCRIPT, or
lost to a connection error (failover), is sent again through `RedisCluster.execute_command`
(`EVAL`: it follows the redirection, refreshes the slot map, loads the script on the new owner).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .store import StateUnavailable

Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]


class _Pipe:
    """The per-tick queue; subclasses send a batch (`_send`) to one server or to a cluster."""

    def __init__(self, scripts: Mapping[str, str], description: str) -> None:
        self.description = description
        self.sources = dict(scripts)
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in scripts.items()}
        self._queue: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, script: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one script call; the future gets its reply or a `StateUnavailable`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            task = loop.create_task(self._flush())  # runs after this tick's other callbacks
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _flush(self) -> None:
        batch, self._queue, self._scheduled = self._queue, [], False
        try:
            replies = await self._send(batch)
        except (RedisError, RedisClusterException, OSError) as exc:
            error = StateUnavailable(f"{self.description}: {type(exc).__name__}: {exc}")
            replies = [error] * len(batch)
        for (_, _, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply if isinstance(reply, StateUnavailable) else StateUnavailable(
                    f"{self.description}: {type(reply).__name__}: {reply}"))
            else:
                future.set_result(reply)

    async def _send(self, batch: list[Call]) -> list[Any]:
        raise NotImplementedError

    def _pack(self, script: str, keys: list[str], args: list[Any]) -> bytes:
        items = [b"EVALSHA", self.shas[script].encode(), b"%d" % len(keys)]
        items += [k.encode() for k in keys]
        items += [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items)

    async def drain(self) -> None:
        """Wait for calls already queued (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _exchange(conn: Connection, packed: bytes, count: int) -> list[Any]:
    """One write, then `count` replies (an error reply is returned, not raised)."""
    await conn.send_packed_command(packed, check_health=False)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


class ScriptPipe(_Pipe):
    """One Redis server (or a primary behind Sentinel / a managed endpoint)."""

    def __init__(self, client: aioredis.Redis, scripts: Mapping[str, str], description: str) -> None:
        super().__init__(scripts, description)
        self.client = client

    async def _send(self, batch: list[Call]) -> list[Any]:
        replies = await self._pipeline(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # Redis restarted or was flushed: load the scripts, retry those calls
            for source in self.sources.values():
                await self.client.script_load(source)
            for i, reply in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, batch: list[Call]) -> list[Any]:
        """The batch as one pre-packed write on one pooled connection, then its replies. Packing
        RESP here rather than through redis-py's Pipeline costs a third of the CPU (measured).
        A connection error is retried once on a fresh connection (a pooled one may be stale
        after a Redis restart)."""
        packed = b"".join(self._pack(script, keys, args) for script, keys, args, _ in batch)
        pool = self.client.connection_pool
        for attempt in (1, 2):
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_packed_command(packed, check_health=False)
                replies: list[Any] = []
                for _ in batch:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await conn.disconnect()
                if attempt == 2:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")


# Replies after which a call is sent again through redis-py's cluster client: the slot moved
# (MOVED, ASK), the cluster is re-sharding or failing over (TRYAGAIN, CLUSTERDOWN), the node does
# not have the script yet (a new owner after failover), or the node could not be reached.
_REROUTE = (AskError, TryAgainError, ClusterDownError, NoScriptError, RedisConnectionError, RedisTimeoutError,
            OSError)


class ClusterScriptPipe(_Pipe):
    """Redis Cluster: all keys carry one hash tag (`slot_key`'s), so a batch goes to one node."""

    def __init__(self, cluster: RedisCluster, scripts: Mapping[str, str], description: str,
                 slot_key: str) -> None:
        super().__init__(scripts, description)
        self.cluster = cluster
        self.slot_key = slot_key

    async def owner(self) -> ClusterNode:
        """The primary owning the store's slot, from redis-py's slot map (discovered on first use)."""
        await self.cluster.initialize()  # no-op once initialized; re-discovers after an error
        node = self.cluster.get_node_from_key(self.slot_key)
        if node is None:
            raise RedisClusterException(f"no node serves the slot of {self.slot_key!r}")
        return node

    async def _send(self, batch: list[Call]) -> list[Any]:
        node = await self.owner()  # no node reachable: the whole batch fails
        replies: list[Any]
        try:
            replies = await self._on_node(node, batch)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            replies = [exc] * len(batch)
        redo = [i for i, reply in enumerate(replies) if isinstance(reply, _REROUTE)]
        if not redo:
            return replies
        # The first call alone, through redis-py (following redirections, re-reading the slot map
        # after a failover); only if that worked the others, at once: when the cluster is away a
        # batch costs one failed attempt, not one per call.
        first, rest = redo[0], redo[1:]
        try:
            replies[first] = await self._eval(batch[first])
        except (RedisError, RedisClusterException, OSError) as exc:
            for i in redo:
                replies[i] = exc
            return replies
        again = await asyncio.gather(*(self._eval(batch[i]) for i in rest), return_exceptions=True)
        for i, reply in zip(rest, again, strict=True):
            replies[i] = reply
        return replies

    async def _on_node(self, node: ClusterNode, batch: list[Call]) -> list[Any]:
        packed = b"".join(self._pack(script, keys, args) for script, keys, args, _ in batch)
        conn = node.acquire_connection()
        try:
            await node.disconnect_if_needed(conn)
            return await _exchange(conn, packed, len(batch))
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await conn.disconnect()
            raise
        finally:
            node.release(conn)

    async def _eval(self, call: Call) -> Any:
        script, keys, args, _ = call
        return await self.cluster.execute_command("EVAL", self.sources[script], len(keys), *keys, *args)
